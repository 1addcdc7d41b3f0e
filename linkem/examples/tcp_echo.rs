//! A TCP echo through a slow, lossy link: `cargo run --example tcp_echo`.
//!
//! Both directions between the two peers delay every packet by 20 ms and drop 3 %.
//! Checks that every round trip takes at least the two delays it crosses, that 1 MiB
//! echoed back is byte for byte what was sent, and that the loss really happened
//! (the client's TCP retransmitted; its namespace's counters say so).

mod common;

use std::time::{Duration, Instant};

use common::Fallible;
use linkem::ip::Subnet;
use linkem::network::Network;
use linkem::tc::impairment::LinkImpairment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DELAY: Duration = Duration::from_millis(20);
const LOSS_PERCENT: f64 = 3.0;
const PORT: u16 = 7007;
const ROUNDS: usize = 20;
const BULK: usize = 1 << 20;

fn main() -> std::process::ExitCode {
    common::main("tcp_echo", run)
}

struct Outcome {
    rtts: Vec<Duration>,
    bulk_intact: bool,
    bulk_time: Duration,
    retransmitted: u64,
}

/// `Tcp: ... RetransSegs` of this thread's namespace (see `udp_rcvbuf_errors` in
/// common for why thread-self).
fn retrans_segs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A byte pattern that a shifted or repeated segment would not reproduce.
fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn run() -> Fallible<bool> {
    let mut net = Network::new(Subnet::new([10, 77, 1, 0].into(), 24)).await?;
    let (server, client) = (net.add_peer().await?, net.add_peer().await?);
    println!(
        "tcp_echo: peers {server} (server) and {client} (client), delay {} and {LOSS_PERCENT} % loss each way, backend: {}",
        common::ms(DELAY),
        common::backend(&net)
    );
    let slow = LinkImpairment::new()
        .with_latency(DELAY)
        .with_loss(LOSS_PERCENT);
    net.apply_impairment_both(server, client, slow).await?;
    let addr = common::sock(net.addr(server)?, PORT);

    let echo = move |_: linkem::PeerContext, ready: common::Ready| async move {
        let listener = TcpListener::bind(("0.0.0.0", PORT))
            .await
            .map_err(common::io_context(format_args!("listen on port {PORT}")))?;
        let _ = ready.send(());
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(common::io_context("accept"))?;
        let (mut rd, mut wr) = stream.split();
        tokio::io::copy(&mut rd, &mut wr)
            .await
            .map_err(common::io_context("echo"))?;
        Ok::<_, String>(())
    };
    let talk = move |_: linkem::PeerContext| async move {
        let retrans_before = retrans_segs();
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(common::io_context(format_args!("connect to {addr}")))?;
        stream
            .set_nodelay(true)
            .map_err(common::io_context("set TCP_NODELAY"))?;
        let mut rtts = Vec::new();
        for round in 0..ROUNDS {
            let msg = pattern(64 + round, round as u64);
            let mut back = vec![0u8; msg.len()];
            let t = Instant::now();
            stream
                .write_all(&msg)
                .await
                .map_err(common::io_context("send"))?;
            stream
                .read_exact(&mut back)
                .await
                .map_err(common::io_context("read the echo"))?;
            rtts.push(t.elapsed());
            if back != msg {
                return Err(format!(
                    "round {round}: the echo differs from what was sent"
                ));
            }
        }
        // The bulk: written and read at once (the echo would otherwise deadlock on
        // full buffers both ways).
        let bulk = pattern(BULK, 0xb01c);
        let t = Instant::now();
        let (mut rd, mut wr) = stream.split();
        let write = async {
            wr.write_all(&bulk).await?;
            wr.shutdown().await
        };
        let mut back = Vec::with_capacity(BULK);
        let read = rd.read_to_end(&mut back);
        let (w, r) = tokio::join!(write, read);
        w.map_err(common::io_context("send the bulk"))?;
        r.map_err(common::io_context("read the bulk's echo"))?;
        Ok::<_, String>(Outcome {
            rtts,
            bulk_intact: back == bulk,
            bulk_time: t.elapsed(),
            retransmitted: retrans_segs() - retrans_before,
        })
    };
    let (outcome, _) =
        common::with_server(&net, server, echo, client, talk, Duration::from_secs(1)).await?;
    let o = outcome?;
    net.shutdown().await?;

    let floor = 2 * DELAY;
    let min = o.rtts.iter().min().copied().unwrap_or_default();
    let median = common::quantile(&o.rtts, 0.5).unwrap_or_default();
    let rtt_ok = o.rtts.len() == ROUNDS && min >= floor;
    let mut table = common::Table::new(&["check", "expected", "measured", "verdict"]);
    table.row(vec![
        format!("{ROUNDS} echo round trips"),
        format!("each >= {} (two delays)", common::ms(floor)),
        format!("min {}, median {}", common::ms(min), common::ms(median)),
        common::verdict(rtt_ok),
    ]);
    table.row(vec![
        format!("{} KiB echoed", BULK / 1024),
        "byte for byte".into(),
        format!(
            "{} in {:.2} s",
            if o.bulk_intact {
                "identical"
            } else {
                "DIFFERENT"
            },
            o.bulk_time.as_secs_f64()
        ),
        common::verdict(o.bulk_intact),
    ]);
    // 1 MiB is about 725 full segments: with 3 % loss the chance that none is lost
    // is 0.97^725, below 1e-9.
    let lossy = o.retransmitted > 0;
    table.row(vec![
        "loss on the way".into(),
        "client's TCP retransmits".into(),
        format!("{} segments retransmitted", o.retransmitted),
        common::verdict(lossy),
    ]);
    print!("{}", table.render());
    Ok(rtt_ok && o.bulk_intact && lossy)
}
