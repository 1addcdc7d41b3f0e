//! Unmodified programs through an emulated link: `cargo run --example unmodified_program`.
//!
//! Peer 1 runs `python3 -m http.server` (through [`Network::command`]); peer 2 fetches a
//! file from it with `curl` (or, where curl is missing, a plain HTTP GET written here),
//! through 25 ms of delay each way. Checks that the content arrives intact and that the
//! delay shows where TCP says it must: connecting takes at least one round trip (SYN,
//! SYN-ACK), the first byte of the answer at least two (the request needs the
//! handshake first).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Fallible;
use linkem::ip::Subnet;
use linkem::network::Network;
use linkem::tc::impairment::LinkImpairment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DELAY: Duration = Duration::from_millis(25);
const PORT: u16 = 8000;
const FILE: &str = "greeting.txt";

fn main() -> std::process::ExitCode {
    common::main("unmodified_program", run)
}

/// A program by name: the first of `dirs` that has it. Absolute directories only, so a
/// normal user's PATH (which may lack them) does not decide, and no relative PATH
/// entry can substitute another program.
fn find(program: &str, dirs: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// What a fetch saw.
struct Fetch {
    client: &'static str,
    body: Vec<u8>,
    connect: Duration,
    first_byte: Duration,
}

async fn run() -> Fallible<bool> {
    let Some(python) = find("python3", &["/usr/bin", "/usr/local/bin", "/bin"]) else {
        return common::fail("python3 was not found in /usr/bin, /usr/local/bin or /bin");
    };
    let curl = find("curl", &["/usr/bin", "/bin", "/usr/local/bin"]);

    // The served directory, with a file whose content the fetch must reproduce.
    let dir = std::env::temp_dir().join(format!("linkem-unmodified-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let content: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("line {i} of a file served through linkem\n").into_bytes())
        .collect();
    std::fs::write(dir.join(FILE), &content).map_err(|e| format!("write the file: {e}"))?;
    let outcome = serve_and_fetch(&python, curl.as_deref(), &dir, &content).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn serve_and_fetch(
    python: &Path,
    curl: Option<&Path>,
    dir: &Path,
    content: &[u8],
) -> Fallible<bool> {
    let mut net = Network::new(Subnet::new([10, 77, 3, 0].into(), 24)).await?;
    let (server, client) = (net.add_peer().await?, net.add_peer().await?);
    println!(
        "unmodified_program: {} -m http.server in peer {server}, {} in peer {client}, \
         delay {} each way, backend: {}",
        python.display(),
        curl.map_or("a Rust HTTP GET (no curl found)".to_string(), |c| c
            .display()
            .to_string()),
        common::ms(DELAY),
        common::backend(&net)
    );
    net.apply_impairment_both(server, client, LinkImpairment::new().with_latency(DELAY))
        .await?;
    let server_addr = net.addr(server)?;

    let mut http = net
        .command(server, python)?
        .args(["-m", "http.server", &PORT.to_string(), "--bind"])
        .arg(server_addr.to_string())
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", python.display()))?;

    // Wait until it listens: connect attempts from the client's side, each a round trip.
    let target = common::sock(server_addr, PORT);
    let listening = net
        .run_in_namespace(client, move |_| async move {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if tokio::net::TcpStream::connect(target).await.is_ok() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
        .await?;
    if !listening {
        let _ = http.kill().await;
        return common::fail("python3's http.server did not listen within 10 s");
    }

    let url = format!("http://{server_addr}:{PORT}/{FILE}");
    let fetch = match curl {
        Some(curl) => fetch_with_curl(&net, client, curl, &url).await,
        None => fetch_in_rust(&net, client, target).await,
    };
    let _ = http.kill().await;
    let fetch = fetch?;
    net.shutdown().await?;

    let rtt = 2 * DELAY;
    let intact = fetch.body == content;
    let connect_ok = fetch.connect >= rtt;
    let first_byte_ok = fetch.first_byte >= 2 * rtt;
    let mut table = common::Table::new(&["check", "expected", "measured", "verdict"]);
    table.row(vec![
        format!("{FILE} via {}", fetch.client),
        format!("{} bytes, identical", content.len()),
        format!(
            "{} bytes, {}",
            fetch.body.len(),
            if intact { "identical" } else { "DIFFERENT" }
        ),
        common::verdict(intact),
    ]);
    table.row(vec![
        "connect".into(),
        format!(">= {} (one round trip)", common::ms(rtt)),
        common::ms(fetch.connect),
        common::verdict(connect_ok),
    ]);
    table.row(vec![
        "first byte".into(),
        format!(">= {} (two round trips)", common::ms(2 * rtt)),
        common::ms(fetch.first_byte),
        common::verdict(first_byte_ok),
    ]);
    print!("{}", table.render());
    Ok(intact && connect_ok && first_byte_ok)
}

/// curl, unmodified, in the client's namespace; its own timers report the delays.
async fn fetch_with_curl(
    net: &Network,
    client: linkem::PeerId,
    curl: &Path,
    url: &str,
) -> Fallible<Fetch> {
    let body_file = std::env::temp_dir().join(format!("linkem-curl-{}", std::process::id()));
    let out = net
        .command(client, curl)?
        .args(["--silent", "--show-error", "--fail", "--noproxy", "*"])
        .args(["--write-out", "%{time_connect} %{time_starttransfer}"])
        .arg("--output")
        .arg(&body_file)
        .arg(url)
        .output()
        .await
        .map_err(|e| format!("run {}: {e}", curl.display()))?;
    let body = std::fs::read(&body_file);
    let _ = std::fs::remove_file(&body_file);
    if !out.status.success() {
        return common::fail(format!(
            "curl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let body = body.map_err(|e| format!("read what curl fetched: {e}"))?;
    let times = String::from_utf8_lossy(&out.stdout).to_string();
    let mut secs = times
        .split_whitespace()
        .map(|t| t.parse::<f64>().map(Duration::from_secs_f64));
    match (secs.next(), secs.next()) {
        (Some(Ok(connect)), Some(Ok(first_byte))) => Ok(Fetch {
            client: "curl",
            body,
            connect,
            first_byte,
        }),
        _ => common::fail(format!("curl's timings could not be read: {times:?}")),
    }
}

/// An HTTP/1.0 GET over a plain socket, timed like curl's `time_connect` and
/// `time_starttransfer`.
async fn fetch_in_rust(
    net: &Network,
    client: linkem::PeerId,
    target: std::net::SocketAddr,
) -> Fallible<Fetch> {
    let got = net
        .run_in_namespace(client, move |_| async move {
            let start = Instant::now();
            let mut s = tokio::net::TcpStream::connect(target)
                .await
                .map_err(common::io_context(format_args!("connect to {target}")))?;
            let connect = start.elapsed();
            let request = format!("GET /{FILE} HTTP/1.0\r\nHost: {target}\r\n\r\n");
            s.write_all(request.as_bytes())
                .await
                .map_err(common::io_context("send the request"))?;
            let mut first = [0u8; 1];
            s.read_exact(&mut first)
                .await
                .map_err(common::io_context("read the answer"))?;
            let first_byte = start.elapsed();
            let mut all = first.to_vec();
            s.read_to_end(&mut all)
                .await
                .map_err(common::io_context("read the answer"))?;
            Ok::<_, String>((all, connect, first_byte))
        })
        .await??;
    let (all, connect, first_byte) = got;
    let Some(split) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return common::fail("the answer has no end of headers");
    };
    if !all.starts_with(b"HTTP/1.0 200") {
        return common::fail(format!(
            "the server answered {:?}",
            String::from_utf8_lossy(&all[..split.min(40)])
        ));
    }
    Ok(Fetch {
        client: "a Rust HTTP GET",
        body: all[split + 4..].to_vec(),
        connect,
        first_byte,
    })
}
