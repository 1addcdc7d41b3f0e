//! What the examples share: the start of `main` (privileges, runtime, errors as
//! sentences), measurements made from inside the peers with real sockets, the checks'
//! tolerances, and a table printer.

// Each example uses a part of this module; the rest would warn per example.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use linkem::network::{Network, PeerContext, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

/// Errors of the examples: every one is printed with `Display`, as a sentence.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Fallible<T> = Result<T, BoxError>;

/// An error from a sentence.
pub fn fail<T>(message: impl Into<String>) -> Fallible<T> {
    Err(message.into().into())
}

/// The backend the network runs on, for the output.
pub fn backend(net: &Network) -> String {
    net.backend().to_string()
}

/// The whole `main` of an example: privileges first (while the process has one
/// thread), then a runtime, then `body`. Its error is printed as a sentence; a failed
/// check (the body returns `Ok(false)`) exits with 1, an error with 2.
pub fn main<F, Fut>(name: &str, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Fallible<bool>>,
{
    if let Err(e) = linkem::userns::enter() {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: could not start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(body()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("{name}: FAILED: a measurement is far from its configuration (see above).");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}

/// What a server tells the caller once it listens.
pub type Ready = oneshot::Sender<()>;

/// Runs `server` in `server_peer` and, once it has signalled [`Ready`], `client` in
/// `client_peer`. Returns the client's output and the server's, if the server finished
/// within `linger` after the client (it is cancelled otherwise, like an echo server that
/// never ends by itself).
pub async fn with_server<S, SF, ST, C, CF, CT>(
    net: &Network,
    server_peer: PeerId,
    server: S,
    client_peer: PeerId,
    client: C,
    linger: Duration,
) -> Fallible<(CT, Option<ST>)>
where
    S: FnOnce(PeerContext, Ready) -> SF + Send + 'static,
    SF: Future<Output = ST> + 'static,
    ST: Send + 'static,
    C: FnOnce(PeerContext) -> CF + Send + 'static,
    CF: Future<Output = CT> + 'static,
    CT: Send + 'static,
{
    let (ready_tx, ready_rx) = oneshot::channel();
    let server = net.run_in_namespace(server_peer, move |ctx| server(ctx, ready_tx));
    tokio::pin!(server);
    tokio::select! {
        ready = ready_rx => if ready.is_err() {
            return fail(format!("the server in peer {server_peer} stopped before it was ready"));
        },
        out = &mut server => {
            out?;
            return fail(format!("the server in peer {server_peer} ended before it was ready"));
        }
    }
    let client = net.run_in_namespace(client_peer, client);
    tokio::pin!(client);
    let mut server_out = None;
    let client_out = loop {
        tokio::select! {
            out = &mut client => break out?,
            out = &mut server, if server_out.is_none() => server_out = Some(out?),
        }
    };
    if server_out.is_none() {
        if let Ok(out) = tokio::time::timeout(linger, &mut server).await {
            server_out = Some(out?);
        }
    }
    Ok((client_out, server_out))
}

/// An I/O error with what was being done, as a sentence.
pub fn io_context(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// A UDP echo server on `port`: every datagram goes back to its sender.
pub async fn udp_echo_server(port: u16, ready: Ready) -> Result<(), String> {
    let sock = UdpSocket::bind(("0.0.0.0", port))
        .await
        .map_err(io_context(format_args!(
            "bind the UDP echo server to port {port}"
        )))?;
    let _ = ready.send(());
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .await
            .map_err(io_context("receive a probe"))?;
        let _ = sock.send_to(&buf[..n], from).await;
    }
}

/// The round trips of UDP probes, one sent every `interval`, each carrying its
/// sequence number; replies are awaited until `grace` after the last probe.
#[derive(Debug, Clone)]
pub struct Probes {
    pub sent: usize,
    /// The round trip of every probe that came back (once; duplicates ignored).
    pub rtts: Vec<Duration>,
}

impl Probes {
    pub fn echoed(&self) -> usize {
        self.rtts.len()
    }
    /// The median round trip, if any probe came back.
    pub fn median(&self) -> Option<Duration> {
        quantile(&self.rtts, 0.5)
    }
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.rtts, q)
    }
}

/// The `q` quantile (nearest rank) of some durations.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    let mut v = values.to_vec();
    v.sort();
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Sends `count` probes to `to` (a UDP echo server) and collects their round trips.
pub async fn udp_probe(
    to: SocketAddr,
    count: usize,
    interval: Duration,
    grace: Duration,
) -> Result<Probes, String> {
    let sock = UdpSocket::bind(("0.0.0.0", 0))
        .await
        .map_err(io_context("bind a UDP probe socket"))?;
    sock.connect(to)
        .await
        .map_err(io_context(format_args!("connect the probe socket to {to}")))?;
    let mut sent_at: Vec<Option<Instant>> = vec![None; count];
    let mut rtt: Vec<Option<Duration>> = vec![None; count];
    let mut tick = tokio::time::interval(interval);
    // A stalled sender resumes at its pace instead of sending the missed probes at once.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0usize;
    let mut echoed = 0usize;
    let mut end = tokio::time::Instant::now() + interval * count as u32 + grace;
    let mut buf = [0u8; 64];
    while echoed < count {
        tokio::select! {
            _ = tick.tick(), if next < count => {
                let mut probe = [0u8; 32];
                probe[..8].copy_from_slice(&(next as u64).to_be_bytes());
                sent_at[next] = Some(Instant::now());
                // A send error (ENOBUFS, an ICMP error reported late) is a lost probe.
                let _ = sock.send(&probe).await;
                next += 1;
                if next == count {
                    end = tokio::time::Instant::now() + grace;
                }
            }
            r = sock.recv(&mut buf) => {
                let Ok(n) = r else { continue };
                if n < 8 { continue }
                let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
                if let (Some(Some(at)), Some(slot @ None)) = (sent_at.get(seq), rtt.get_mut(seq)) {
                    *slot = Some(at.elapsed());
                    echoed += 1;
                }
            }
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    Ok(Probes {
        sent: next,
        rtts: rtt.into_iter().flatten().collect(),
    })
}

/// Round trips from `from` to `to` by UDP echo (the server listens on `port` in `to`).
pub async fn measure_rtt(
    net: &Network,
    from: PeerId,
    to: PeerId,
    port: u16,
    count: usize,
    interval: Duration,
    grace: Duration,
) -> Fallible<Probes> {
    let addr = SocketAddr::new(net.addr(to)?, port);
    let (probes, _) = with_server(
        net,
        to,
        move |_, ready| udp_echo_server(port, ready),
        from,
        move |_| udp_probe(addr, count, interval, grace),
        Duration::ZERO,
    )
    .await?;
    Ok(probes?)
}

/// Datagrams sent one way and how many distinct ones arrived.
#[derive(Debug, Clone, Copy)]
pub struct OneWay {
    pub sent: usize,
    pub received: usize,
    /// Datagrams the receiving peer's kernel dropped for lack of socket buffer
    /// (`RcvbufErrors` of its namespace): drops that are not the link's doing.
    pub rcvbuf_errors: u64,
}

/// `Udp: ... RcvbufErrors` of the calling thread's network namespace. /proc/thread-self
/// and not /proc/self: /proc/self/net is the namespace of the thread group leader
/// (the process's main thread), not of this peer's thread.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Sends `count` numbered datagrams from `from` to `to`, `per_ms` every millisecond,
/// and counts the distinct ones that arrive (until `grace` after the last).
pub async fn measure_one_way(
    net: &Network,
    from: PeerId,
    to: PeerId,
    port: u16,
    count: usize,
    per_ms: usize,
    grace: Duration,
) -> Fallible<OneWay> {
    let addr = SocketAddr::new(net.addr(to)?, port);
    let sending = Duration::from_millis(count.div_ceil(per_ms) as u64);
    let receiver = move |_: PeerContext, ready: Ready| async move {
        let sock = UdpSocket::bind(("0.0.0.0", port))
            .await
            .map_err(io_context(format_args!("bind the receiver to port {port}")))?;
        let errors_before = udp_rcvbuf_errors();
        let _ = ready.send(());
        let mut seen = vec![false; count];
        let mut received = 0;
        let mut buf = [0u8; 64];
        // The sender starts at most a moment after `ready`; the deadline covers its
        // sending time plus the grace for the last datagram's delay.
        let end = tokio::time::Instant::now() + sending + grace + Duration::from_millis(200);
        while received < count {
            tokio::select! {
                r = sock.recv(&mut buf) => {
                    let Ok(n) = r else { continue };
                    if n < 8 { continue }
                    let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
                    if let Some(s @ false) = seen.get_mut(seq) {
                        *s = true;
                        received += 1;
                    }
                }
                _ = tokio::time::sleep_until(end) => break,
            }
        }
        Ok::<_, String>((received, udp_rcvbuf_errors() - errors_before))
    };
    let sender = move |_: PeerContext| async move {
        let sock = UdpSocket::bind(("0.0.0.0", 0))
            .await
            .map_err(io_context("bind the sender"))?;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0usize;
        while seq < count {
            tick.tick().await;
            for _ in 0..per_ms.min(count - seq) {
                let mut d = [0u8; 32];
                d[..8].copy_from_slice(&(seq as u64).to_be_bytes());
                // A partitioned or lossy link drops silently; a send error is a loss too.
                let _ = sock.send_to(&d, addr).await;
                seq += 1;
            }
        }
        Ok::<_, String>(seq)
    };
    let linger = grace + Duration::from_millis(500);
    let (sent, received) = with_server(net, to, receiver, from, sender, linger).await?;
    let sent = sent?;
    let Some(received) = received else {
        return fail(format!(
            "the receiver in peer {to} did not finish in time after the sender"
        ));
    };
    let (received, rcvbuf_errors) = received?;
    Ok(OneWay {
        sent,
        received,
        rcvbuf_errors,
    })
}

/// One TCP flow's goodput, counted at the receiver.
#[derive(Debug, Clone, Copy)]
pub struct Goodput {
    /// Payload bytes received inside the measurement window.
    pub bytes: u64,
    /// The window's length.
    pub window: Duration,
}

impl Goodput {
    pub fn bits_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.window.as_secs_f64()
    }
}

/// One TCP flow from `from` to `to` for `warmup + window` (and a little more); the
/// receiver counts payload bytes that arrive during `window`, which starts `warmup`
/// after the first byte (slow start and the shaper's initial burst are left out).
pub async fn measure_goodput(
    net: &Network,
    from: PeerId,
    to: PeerId,
    port: u16,
    warmup: Duration,
    window: Duration,
) -> Fallible<Goodput> {
    let addr = SocketAddr::new(net.addr(to)?, port);
    let receiver = move |_: PeerContext, ready: Ready| async move {
        let listener = TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(io_context(format_args!("listen on port {port}")))?;
        let _ = ready.send(());
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(io_context("accept the flow"))?;
        // Small reads keep the window's edges sharp (one read is at most 16 KiB).
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = None;
        let mut bytes = 0u64;
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(io_context("receive the flow"))?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            let start = *first.get_or_insert(now) + warmup;
            if now >= start && now < start + window {
                bytes += n as u64;
            }
            if now >= start + window {
                break;
            }
        }
        match first {
            Some(_) => Ok(Goodput { bytes, window }),
            None => Err("the flow delivered no byte".to_string()),
        }
    };
    let sender = move |_: PeerContext| async move {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(io_context(format_args!("connect to {addr}")))?;
        let chunk = vec![0x5au8; 64 * 1024];
        let until = Instant::now() + warmup + window + Duration::from_millis(500);
        while Instant::now() < until {
            // The receiver closes once its window is over: the end, not an error.
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
        }
        Ok::<_, String>(())
    };
    let (sent, received) =
        with_server(net, to, receiver, from, sender, Duration::from_secs(2)).await?;
    sent?;
    match received {
        Some(r) => Ok(r?),
        None => fail(format!("the receiver in peer {to} did not finish")),
    }
}

/// The payload fraction of a full-sized TCP segment on the wire as tc counts it
/// (skb->len at the egress qdisc: the Ethernet header, no preamble or FCS): MTU 1500,
/// IPv4 20, TCP 20 + 12 of timestamps (Linux's default) leaves 1448 of 1514 bytes.
pub const TCP_PAYLOAD_FRACTION: f64 = 1448.0 / 1514.0;

/// The band a binomial count falls in with 5 standard deviations: `(low, high)` for
/// `n` trials of probability `p`. For p = 0 or 1 the band is the exact count.
pub fn binomial_band(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    (
        (mean - 5.0 * sigma).max(0.0),
        (mean + 5.0 * sigma).min(n as f64),
    )
}

/// Five standard errors of a sample median of `n` round trips whose two one-way
/// delays each vary by `jitter` (taken, conservatively, as a normal standard deviation;
/// a uniform ± jitter has a smaller one, jitter/sqrt(3)): the standard error of a median
/// is 1.2533 sigma / sqrt(n) for a normal sample.
pub fn median_tolerance(jitter: Duration, n: usize) -> Duration {
    let sigma = jitter.as_secs_f64() * 2f64.sqrt();
    Duration::from_secs_f64(5.0 * 1.2533 * sigma / (n.max(1) as f64).sqrt())
}

/// How much later than configured a median round trip may be: the cost of the path
/// itself (twice the 90th percentile of the unimpaired baseline measured in the same
/// run: sockets, wakeups, the bridge) plus 1 ms for the delay timers firing late on a
/// loaded machine (netem was measured within 62 us of its delay; the userspace engine's
/// budget is 100 us; the rest is scheduling on shared cores).
pub fn path_allowance(baseline_p90: Duration) -> Duration {
    baseline_p90 * 2 + Duration::from_millis(1)
}

/// Milliseconds, for the output.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 {
        format!("{v:.3} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// Mbit/s, for the output.
pub fn mbit(bits_per_second: f64) -> String {
    format!("{:.2} Mbit/s", bits_per_second / 1e6)
}

/// The address of a peer as a socket address.
pub fn sock(addr: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

/// A table printed with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |i: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let _ = write!(text, "{cell:<w$}  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut out, &rule);
        for r in &self.rows {
            line(&mut out, r);
        }
        out
    }
}

/// A check's verdict, for the table.
pub fn verdict(ok: bool) -> String {
    if ok { "ok" } else { "FAIL" }.to_string()
}
