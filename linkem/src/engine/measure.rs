//! The engine's numbers next to the kernel path's, measured in one run (the
//! `engine-measure` example prints them, then a summary table with goals and ratios):
//! TCP goodput of one unimpaired flow (engine against a kernel bridge), TCP goodput
//! through 100 Mbit/s and 1 Gbit/s links with 10 ms delay (through the public API, as
//! users get it, against the header-limited ceiling), added round-trip time at zero
//! delay, delay error at 1, 10 and 100 ms (from round trips, and one way from the
//! kernel's arrival stamps), small-UDP packet rate, the engine thread's CPU while a
//! 3-peer network idles, build and teardown of a 3-peer network on either backend,
//! and the cost of capture (goodput and round trips with and without).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lab::{in_ns, pings, v4, Echo, Lab};
use crate::capture::CaptureConfig;
use crate::impairment::Rate;
use crate::ip::Subnet;
use crate::network::{BackendKind, Link, Network};
use crate::tc::impairment::LinkImpairment;

/// One TCP flow from peer 1 to peer 2 for `secs`: goodput in Gbit/s.
fn goodput(lab: &Lab, secs: f64) -> f64 {
    flow(lab, Limit::Secs(secs))
}

/// How long a measured flow lasts.
#[derive(Clone, Copy)]
enum Limit {
    Secs(f64),
    Bytes(usize),
}

/// One TCP flow from peer 1 to peer 2 until `limit`: goodput in Gbit/s.
fn flow(lab: &Lab, limit: Limit) -> f64 {
    let addr = v4(2);
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server = in_ns(lab.ns(2), move || {
        let listener = TcpListener::bind((addr, 5201)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        total as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
    });
    ready.recv().unwrap();
    in_ns(lab.ns(1), move || {
        let mut s = TcpStream::connect((addr, 5201)).unwrap();
        let buf = vec![0x5au8; 1 << 20];
        let start = Instant::now();
        let mut sent = 0;
        loop {
            match limit {
                Limit::Secs(secs) if start.elapsed().as_secs_f64() >= secs => break,
                Limit::Bytes(len) if sent >= len => break,
                _ => {}
            }
            if s.write_all(&buf).is_err() {
                break;
            }
            sent += buf.len();
        }
    })
    .join()
    .unwrap();
    server.join().unwrap()
}

/// Round-trip times of `count` UDP echoes spaced `gap` apart (so each one meets an
/// engine that has gone back to sleep when `gap` exceeds its polling window).
fn spaced_rtts(lab: &Lab, count: usize, gap: Duration) -> Vec<Duration> {
    let to = SocketAddr::new(v4(2), 7000);
    let mut out = Vec::new();
    for _ in 0..count {
        out.extend(pings(lab.ns(1), to, 1, Duration::from_secs(1)));
        std::thread::sleep(gap);
    }
    out
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Small datagrams (18 bytes of payload, 64-byte frames) from peer 1 to peer 2 for
/// `secs`: datagrams received per second.
fn udp_pps(lab: &Lab, secs: f64) -> f64 {
    let addr: IpAddr = v4(2);
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (stop2, received2) = (Arc::clone(&stop), Arc::clone(&received));
    let server = in_ns(lab.ns(2), move || {
        let s = UdpSocket::bind((addr, 5300)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        while !stop2.load(Ordering::Relaxed) {
            if s.recv(&mut buf).is_ok() {
                received2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    ready.recv().unwrap();
    let stop3 = Arc::clone(&stop);
    let client = in_ns(lab.ns(1), move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        s.connect((addr, 5300)).unwrap();
        while !stop3.load(Ordering::Relaxed) {
            let _ = s.send(&[0u8; 18]);
        }
    });
    // Warm up (neighbour resolution), then count over the window.
    std::thread::sleep(Duration::from_millis(200));
    let start_count = received.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = received.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    server.join().unwrap();
    n as f64 / elapsed
}

/// SIOCGSTAMPNS_OLD of include/uapi/asm-generic/sockios.h, which on 64-bit targets
/// answers a 64-bit timespec (libc does not name it).
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

/// One-way delays from peer 1 to peer 2 of `count` datagrams sent `gap` apart, each
/// carrying its send time; the receiver takes the time the kernel stamped on its
/// arrival in peer 2 (SIOCGSTAMPNS, set when veth handed it to the stack), so neither
/// thread's wakeup is in the number: only the path through the engine.
fn one_way(lab: &Lab, count: usize, gap: Duration) -> Vec<Duration> {
    use std::os::fd::AsRawFd;
    let addr = v4(2);
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server = in_ns(lab.ns(2), move || {
        let s = UdpSocket::bind((addr, 5400)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        ready_tx.send(()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 16];
        while out.len() < count {
            match s.recv(&mut buf) {
                Ok(8) => {}
                Ok(_) => {
                    // The warm-up datagram: the first SIOCGSTAMPNS switches stamping on
                    // (sock_get_timestampns()) and answers "now" for it.
                    let mut ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    // SAFETY: SIOCGSTAMPNS writes one timespec.
                    unsafe { libc::ioctl(s.as_raw_fd(), SIOCGSTAMPNS as _, &mut ts) };
                    continue;
                }
                Err(_) => break,
            }
            let sent = i64::from_be_bytes(buf[..8].try_into().unwrap());
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: SIOCGSTAMPNS writes one timespec, the last datagram's arrival.
            if unsafe { libc::ioctl(s.as_raw_fd(), SIOCGSTAMPNS as _, &mut ts) } != 0 {
                break;
            }
            let arrived = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
            out.push(Duration::from_nanos((arrived - sent).max(0) as u64));
        }
        out
    });
    ready.recv().unwrap();
    in_ns(lab.ns(1), move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        s.connect((addr, 5400)).unwrap();
        // Neighbour resolution first: the first datagram would wait for ARP.
        let _ = s.send(&[0u8; 1]);
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..count {
            let _ = s.send(&super::clock::realtime().to_be_bytes());
            std::thread::sleep(gap);
        }
    })
    .join()
    .unwrap();
    server.join().unwrap()
}

/// Median and 99th percentile of `samples` minus `offset`, in microseconds.
fn error_stats(samples: &[Duration], offset: f64) -> (f64, f64) {
    let mut err: Vec<f64> = samples.iter().map(|r| us(*r) - offset).collect();
    err.sort_by(f64::total_cmp);
    let med = err[err.len() / 2];
    let p99 = err[((err.len() - 1) as f64 * 0.99).round() as usize];
    (med, p99)
}

/// A capture file in the temporary directory for the measurement, and its size.
struct CaptureFile(std::path::PathBuf);

impl CaptureFile {
    fn new() -> CaptureFile {
        CaptureFile(
            std::env::temp_dir().join(format!("linkem-measure-{}.pcapng", std::process::id())),
        )
    }
    fn size(&self) -> u64 {
        std::fs::metadata(&self.0).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for CaptureFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// On-CPU time of this process's thread named `name` (the first field of its
/// schedstat, in nanoseconds; finer than the clock ticks of `stat`).
fn thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/thread-self/..").ok()?.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        let ns = stat.split(' ').next()?.parse::<u64>().ok()?;
        return Some(Duration::from_nanos(ns));
    }
    None
}

/// Delay error from one-way delays (see [`one_way`]): the engine's own error, without
/// the wakeups of the threads that measure. A datagram every millisecond, so the
/// engine is as busy at every configured delay; the baseline is the same stream
/// through the unimpaired link. Returns (delay in ms, median, p99) per delay.
fn delay_error_one_way(engine: &Lab, quick: bool) -> Vec<(u64, f64, f64)> {
    let count = if quick { 200 } else { 1000 };
    let gap = Duration::from_millis(1);
    let mut base = one_way(engine, count, gap);
    let base = us(quantile(&mut base, 0.5));
    let mut out = Vec::new();
    for ms in [1u64, 10, 100] {
        let d = Duration::from_millis(ms);
        engine.set_link(1, 2, &LinkImpairment::new().with_latency(d));
        let v = one_way(engine, count, gap);
        let (med, p99) = error_stats(&v, base + us(d));
        println!(
            "delay error at {ms} ms, one way (kernel arrival stamp - send time - {base:.1} us baseline - delay, {} samples): median {med:+.1} us, p99 {p99:+.1} us",
            v.len()
        );
        out.push((ms, med, p99));
    }
    engine.set_link(1, 2, &LinkImpairment::new());
    out
}

/// What capture costs, measured back to back with the same engine without it.
struct CaptureCost {
    goodput_plain: f64,
    goodput_captured: f64,
    rtt_plain: Duration,
    rtt_captured: Duration,
}

/// Goodput and added round-trip time of an engine that captures, next to `plain`
/// (the same engine without), measured back to back in this run.
fn capture_cost(plain: &Lab, n: usize) -> CaptureCost {
    let file = CaptureFile::new();
    let captured = Lab::with_capture(2, &CaptureConfig::new(&file.0));
    // Flows of 16 MiB, so that every packet of the captured ones is recorded (3 of them
    // fit in the default 64 MiB cap), alternating, the best of 3 each.
    let bytes = Limit::Bytes(16 << 20);
    let (mut g_plain, mut g_captured) = (0f64, 0f64);
    for _ in 0..3 {
        g_plain = g_plain.max(flow(plain, bytes));
        g_captured = g_captured.max(flow(&captured, bytes));
    }
    let size_after_goodput = file.size();
    let rtt = |lab: &Lab| {
        let _echo = Echo::start(lab.ns(2), v4(2), 7000);
        let mut v = spaced_rtts(lab, n, Duration::from_millis(5));
        (quantile(&mut v, 0.5), quantile(&mut v, 0.99))
    };
    let (r_plain, r_plain99) = rtt(plain);
    let (r_captured, r_captured99) = rtt(&captured);
    drop(captured);
    println!(
        "capture cost: tcp goodput of a 16 MiB flow (best of 3) {g_captured:.2} Gbit/s with capture, {g_plain:.2} without ({:.0} %; capture file {:.1} MiB, the cap {})",
        100.0 * g_captured / g_plain,
        size_after_goodput as f64 / (1 << 20) as f64,
        if size_after_goodput + (1 << 20) >= 64 << 20 { "reached: later packets were not recorded" } else { "not reached: every packet recorded" }
    );
    println!(
        "capture cost: udp echo rtt 5 ms apart, median {:.1} us (p99 {:.1}) with capture, {:.1} us (p99 {:.1}) without; added median {:+.1} us",
        us(r_captured),
        us(r_captured99),
        us(r_plain),
        us(r_plain99),
        us(r_captured) - us(r_plain)
    );
    CaptureCost {
        goodput_plain: g_plain,
        goodput_captured: g_captured,
        rtt_plain: r_plain,
        rtt_captured: r_captured,
    }
}

// ---------------------------------------------------------------------------------
// Through the public API: what a user's network does.

/// The subnet of the networks built through the public API (apart from the lab's).
fn api_subnet() -> Subnet {
    Subnet::new(IpAddr::from([10, 98, 0, 0]), 24)
}

/// What each peer's TCP may grow its buffers to (`min default max`, bytes): 32 MiB, so
/// that neither window limits a flow through 1 Gbit/s and 10 ms (1.25 MB in flight,
/// plus what waits in the link's queue). Both sysctls are per network namespace
/// (since Linux 4.15), so this changes only the peer.
const TCP_BUFFERS: &str = "4096 131072 33554432";

/// Raises `tcp_rmem`/`tcp_wmem` of the namespace the calling thread is in (/proc/sys/net
/// answers for the writer's namespace).
fn raise_tcp_buffers() -> std::io::Result<()> {
    for name in ["tcp_rmem", "tcp_wmem"] {
        std::fs::write(format!("/proc/sys/net/ipv4/{name}"), TCP_BUFFERS)?;
    }
    Ok(())
}

/// Receives one TCP connection on `listener` until the sender closes it: goodput in
/// Mbit/s after `warmup` from the first byte (slow start, and the link's queue filling,
/// are not part of it).
fn receive_steady(listener: TcpListener, warmup: Duration) -> std::io::Result<f64> {
    let (mut s, _) = listener.accept()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut first: Option<Instant> = None;
    let mut mark: Option<(Instant, u64)> = None;
    let mut last = Instant::now();
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        last = Instant::now();
        total += n as u64;
        let t0 = *first.get_or_insert(last);
        if mark.is_none() && last - t0 >= warmup {
            mark = Some((last, total));
        }
    }
    let (t, bytes) = mark.ok_or_else(|| std::io::Error::other("the flow ended during warm-up"))?;
    Ok((total - bytes) as f64 * 8.0 / (last - t).as_secs_f64() / 1e6)
}

/// Sends to `to` for `secs`, then closes. Retries the connection while the receiver is
/// not listening yet.
fn send_for(to: SocketAddr, secs: f64) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut s = loop {
        match TcpStream::connect(to) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        s.write_all(&buf)?;
    }
    Ok(())
}

/// One shaped flow's result.
struct Shaped {
    mbit: f64,
    /// Packets the link's queue dropped (userspace backend) or the link's drops (kernel).
    drops: u64,
}

/// One TCP flow from peer 1 to peer 2 of a 2-peer network on `backend`, through
/// `impairment` on the link 1 -> 2 (the acknowledgements go back unimpaired), with
/// raised TCP buffers in both peers: goodput in Mbit/s after `warmup`, over `secs`.
async fn shaped_goodput(
    backend: BackendKind,
    impairment: LinkImpairment,
    warmup: Duration,
    secs: f64,
) -> crate::Result<Shaped> {
    let mut net = Network::builder(api_subnet())
        .backend(backend)
        .build()
        .await?;
    let a = net.add_peer().await?;
    let b = net.add_peer().await?;
    for p in [a, b] {
        net.run_in_namespace(p, |_| async { raise_tcp_buffers() })
            .await?
            .map_err(|e| crate::Error::io("raise the peer's tcp_rmem/tcp_wmem", e))?;
    }
    let link = Link::new(a, b);
    net.apply_impairment(link, impairment).await?;
    let to = SocketAddr::new(net.addr(b)?, 5500);
    let listener = net
        .run_in_namespace(b, move |_| async move { TcpListener::bind(to) })
        .await?
        .map_err(|e| crate::Error::io("listen in peer 2", e))?;
    let total = warmup.as_secs_f64() + secs;
    let (received, sent) = tokio::join!(
        net.run_in_namespace(b, move |_| async move { receive_steady(listener, warmup) }),
        net.run_in_namespace(a, move |_| async move { send_for(to, total) }),
    );
    sent?.map_err(|e| crate::Error::io("send from peer 1", e))?;
    let mbit = received?.map_err(|e| crate::Error::io("receive in peer 2", e))?;
    let stats = net.link_stats(link).await?.unwrap_or_default();
    let drops = match stats.fates {
        Some(f) => f.dropped_queue,
        None => u64::from(stats.drops),
    };
    net.shutdown().await?;
    Ok(Shaped { mbit, drops })
}

/// Goodput of one TCP flow through `rate` with 10 ms delay on the userspace backend,
/// against the header-limited ceiling, and the kernel backend in the same run where it
/// can (it needs sch_netem for the delay; without it, its shaper alone, no delay).
fn shaped(rt: &tokio::runtime::Runtime, rate: Rate, quick: bool, rows: &mut Vec<Row>) {
    let delay = Duration::from_millis(10);
    let (warmup, secs) = if quick {
        (Duration::from_millis(500), 1.5)
    } else {
        (Duration::from_secs(1), 4.0)
    };
    let imp = LinkImpairment::new().with_rate(rate).with_latency(delay);
    // A full-size segment is 1514 bytes on the wire (Ethernet 14 + IP 20 + TCP 20 + 12
    // of timestamps + 1448 of payload), and the rate counts wire bytes, as tc does.
    let ceiling = rate.as_mbit_f64() * 1448.0 / 1514.0;
    let label = format!("{} Mbit/s", rate.as_mbit_f64());
    let user = rt.block_on(shaped_goodput(
        BackendKind::Userspace,
        imp.clone(),
        warmup,
        secs,
    ));
    let kernel = match rt.block_on(shaped_goodput(BackendKind::Kernel, imp, warmup, secs)) {
        Ok(k) => Ok((k, "kernel backend, same impairment")),
        Err(_) => rt
            .block_on(shaped_goodput(
                BackendKind::Kernel,
                LinkImpairment::new().with_rate(rate),
                warmup,
                secs,
            ))
            .map(|k| {
                (
                    k,
                    "kernel backend, its shaper alone (no sch_netem here for the delay)",
                )
            }),
    };
    let kernel_text = match &kernel {
        Ok((k, what)) => format!("{:.1} Mbit/s ({what}; drops {})", k.mbit, k.drops),
        Err(e) => format!("not measured: {e}"),
    };
    match user {
        Ok(u) => {
            let ratio = u.mbit / ceiling;
            println!(
                "tcp goodput through {label}, 10 ms delay, userspace backend: {:.1} Mbit/s, {:.1} % of the header-limited ceiling {ceiling:.1} Mbit/s (queue drops {}); {kernel_text}",
                u.mbit,
                100.0 * ratio,
                u.drops
            );
            rows.push(Row {
                what: format!("TCP goodput through {label}, 10 ms delay"),
                goal: "within 5 % of the ceiling".into(),
                user: format!("{:.1} Mbit/s ({} queue drops)", u.mbit, u.drops),
                baseline: format!("ceiling {ceiling:.1} Mbit/s; {kernel_text}"),
                ratio: format!("{:.1} % of ceiling", 100.0 * ratio),
                met: Some(ratio >= 0.95),
            });
        }
        Err(e) => {
            println!("tcp goodput through {label}, 10 ms delay, userspace backend: failed: {e}");
            rows.push(Row {
                what: format!("TCP goodput through {label}, 10 ms delay"),
                goal: "within 5 % of the ceiling".into(),
                user: format!("failed: {e}"),
                baseline: format!("ceiling {ceiling:.1} Mbit/s; {kernel_text}"),
                ratio: "-".into(),
                met: Some(false),
            });
        }
    }
}

/// Create, add 3 peers, drop: the three times.
async fn build_teardown(backend: BackendKind) -> crate::Result<[Duration; 3]> {
    let start = Instant::now();
    let mut net = Network::builder(api_subnet())
        .backend(backend)
        .build()
        .await?;
    let create = start.elapsed();
    let start = Instant::now();
    for _ in 0..3 {
        net.add_peer().await?;
    }
    let add = start.elapsed();
    let start = Instant::now();
    drop(net);
    Ok([create, add, start.elapsed()])
}

/// Build and teardown of a 3-peer network on each backend, alternating which goes
/// first; medians. The kernel's asynchronous cleanup of the namespaces (cleanup_net()
/// on the netns workqueue, about 120 ms here) is let finish between runs, so one run
/// does not pay for the previous one.
fn build_teardown_both(rt: &tokio::runtime::Runtime, quick: bool, rows: &mut Vec<Row>) {
    let runs = if quick { 5 } else { 20 };
    let kinds = [BackendKind::Kernel, BackendKind::Userspace];
    let mut samples: [Vec<[Duration; 3]>; 2] = [Vec::new(), Vec::new()];
    for r in 0..runs {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            match rt.block_on(build_teardown(kinds[k])) {
                Ok(t) => samples[k].push(t),
                Err(e) => {
                    println!("build and teardown, {} backend: failed: {e}", kinds[k]);
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let med = |v: &[[Duration; 3]], i: Option<usize>| {
        let mut x: Vec<Duration> = v
            .iter()
            .map(|t| match i {
                Some(i) => t[i],
                None => t.iter().sum(),
            })
            .collect();
        quantile(&mut x, 0.5)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (k, kind) in kinds.iter().enumerate() {
        println!(
            "build and teardown of a 3-peer network, {kind} backend ({runs} runs, medians): create {:.2} ms, add 3 peers {:.2} ms, teardown {:.2} ms, total {:.2} ms",
            ms(med(&samples[k], Some(0))),
            ms(med(&samples[k], Some(1))),
            ms(med(&samples[k], Some(2))),
            ms(med(&samples[k], None)),
        );
    }
    let (kt, ut) = (med(&samples[0], None), med(&samples[1], None));
    rows.push(Row {
        what: "build and teardown of a 3-peer network (median total)".into(),
        goal: "no slower than the kernel backend".into(),
        user: format!("{:.2} ms", ms(ut)),
        baseline: format!("{:.2} ms (kernel backend)", ms(kt)),
        ratio: format!(
            "{:.2}x the kernel's time",
            ut.as_secs_f64() / kt.as_secs_f64()
        ),
        met: Some(ut <= kt),
    });
}

// ---------------------------------------------------------------------------------

/// One line of the summary table.
struct Row {
    what: String,
    goal: String,
    user: String,
    baseline: String,
    ratio: String,
    /// Whether the goal is met (`None`: no goal).
    met: Option<bool>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Measures and prints everything; `quick` shortens each measurement.
pub fn run(quick: bool) {
    let secs = if quick { 1.0 } else { 3.0 };
    let load_before = load_average();
    println!("engine measurements (kernel path alongside, same run); load average {load_before}");
    let mut rows = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let bridged = Lab::bridged(2);
    let engine = Lab::new(2);

    // Alternating, the best of 3 each: one pass on this VM varies by about 25 %.
    let (mut g_bridge, mut g_engine) = (0f64, 0f64);
    for _ in 0..3 {
        g_bridge = g_bridge.max(goodput(&bridged, secs));
        g_engine = g_engine.max(goodput(&engine, secs));
    }
    println!(
        "tcp goodput, one flow, MTU 1500 (best of 3, {secs} s each): engine {g_engine:.2} Gbit/s, kernel bridge {g_bridge:.2} Gbit/s ({:.0} %); frames the ports' buffers dropped: {}",
        100.0 * g_engine / g_bridge,
        engine.engine().receive_drops()
    );
    rows.push(Row {
        what: "TCP goodput, one unimpaired flow, MTU 1500".into(),
        goal: ">= 2 Gbit/s; aim 50 % of the kernel path".into(),
        user: format!("{g_engine:.2} Gbit/s"),
        baseline: format!("{g_bridge:.2} Gbit/s (veth + bridge)"),
        ratio: format!("{:.0} %", 100.0 * g_engine / g_bridge),
        met: Some(g_engine >= 2.0),
    });

    for rate in [Rate::mbit(100), Rate::gbit(1)] {
        shaped(&rt, rate, quick, &mut rows);
    }

    let cost = capture_cost(&engine, if quick { 50 } else { 200 });

    let n = if quick { 50 } else { 200 };
    let rtt = |lab: &Lab, gap| {
        let _echo = Echo::start(lab.ns(2), v4(2), 7000);
        let mut v = spaced_rtts(lab, n, gap);
        let m = quantile(&mut v, 0.5);
        (m, quantile(&mut v, 0.99))
    };
    for (label, gap) in [
        ("echoes 5 ms apart", Duration::from_millis(5)),
        ("back to back", Duration::ZERO),
    ] {
        let (b, bp) = rtt(&bridged, gap);
        let (e, ep) = rtt(&engine, gap);
        println!(
            "udp echo rtt, {label}: engine median {:.1} us (p99 {:.1}), bridge median {:.1} us (p99 {:.1}); added median {:.1} us",
            us(e), us(ep), us(b), us(bp), us(e) - us(b)
        );
        let added = us(e) - us(b);
        rows.push(Row {
            what: format!("added RTT at zero delay, median, {label}"),
            goal: "< 50 us".into(),
            user: format!("{:.1} us (p99 {:.1})", us(e), us(ep)),
            baseline: format!("{:.1} us (p99 {:.1}) bridge", us(b), us(bp)),
            ratio: format!("added {added:+.1} us"),
            met: Some(added < 50.0),
        });
    }

    let mut rtt_errors = Vec::new();
    {
        let _echo = Echo::start(engine.ns(2), v4(2), 7000);
        let mut base = spaced_rtts(&engine, n, Duration::from_millis(2));
        let base = quantile(&mut base, 0.5);
        for ms in [1u64, 10, 100] {
            let d = Duration::from_millis(ms);
            engine.set_link(1, 2, &LinkImpairment::new().with_latency(d));
            let count = match (quick, ms) {
                (true, 100) => 10,
                (true, _) => 50,
                (false, 100) => 40,
                (false, _) => 200,
            };
            let v = spaced_rtts(&engine, count, Duration::from_millis(1));
            let (med, p99) = error_stats(&v, us(base) + us(d));
            println!(
                "delay error at {ms} ms (rtt - {:.1} us baseline - delay, {} samples): median {med:+.1} us, p99 {p99:+.1} us",
                us(base),
                v.len()
            );
            rtt_errors.push((med, p99));
        }
        engine.set_link(1, 2, &LinkImpairment::new());
    }
    let one_way_errors = delay_error_one_way(&engine, quick);
    for ((ms, med, p99), (rmed, rp99)) in one_way_errors.into_iter().zip(rtt_errors) {
        rows.push(Row {
            what: format!("delay error at {ms} ms, one way (round trip)"),
            goal: "|median| < 50 us, p99 < 500 us".into(),
            user: format!("median {med:+.1} us, p99 {p99:+.1} us (rtt: {rmed:+.1} / {rp99:+.1})"),
            baseline: "the same stream unimpaired, same run".into(),
            ratio: "-".into(),
            met: Some(med.abs() < 50.0 && p99 < 500.0),
        });
    }

    let p_bridge = udp_pps(&bridged, secs);
    let p_engine = udp_pps(&engine, secs);
    println!(
        "small udp (64-byte frames), one sender: engine {:.0} kpps, kernel bridge {:.0} kpps",
        p_engine / 1e3,
        p_bridge / 1e3
    );
    rows.push(Row {
        what: "packets per second, small UDP (64-byte frames), one sender".into(),
        goal: "-".into(),
        user: format!("{:.0} kpps", p_engine / 1e3),
        baseline: format!("{:.0} kpps (bridge)", p_bridge / 1e3),
        ratio: format!("{:.0} %", 100.0 * p_engine / p_bridge),
        met: None,
    });
    rows.push(Row {
        what: "capture: TCP goodput of a 16 MiB flow (best of 3)".into(),
        goal: "-".into(),
        user: format!("{:.2} Gbit/s with capture", cost.goodput_captured),
        baseline: format!("{:.2} Gbit/s without", cost.goodput_plain),
        ratio: format!(
            "{:.0} %",
            100.0 * cost.goodput_captured / cost.goodput_plain
        ),
        met: None,
    });
    rows.push(Row {
        what: "capture: UDP echo RTT, median, 5 ms apart".into(),
        goal: "-".into(),
        user: format!("{:.1} us with capture", us(cost.rtt_captured)),
        baseline: format!("{:.1} us without", us(cost.rtt_plain)),
        ratio: format!(
            "added {:+.1} us",
            us(cost.rtt_captured) - us(cost.rtt_plain)
        ),
        met: None,
    });
    drop(bridged);
    drop(engine);

    {
        let _idle = Lab::new(3);
        let window = Duration::from_secs(if quick { 2 } else { 10 });
        // Let neighbour discovery and the hub's own IPv6 chatter settle first.
        std::thread::sleep(Duration::from_millis(500));
        let before = thread_cpu("linkem-engine-l");
        std::thread::sleep(window);
        let after = thread_cpu("linkem-engine-l");
        match (before, after) {
            (Some(b), Some(a)) => {
                let share = 100.0 * (a - b).as_secs_f64() / window.as_secs_f64();
                println!(
                    "idle 3-peer network: engine thread used {:.1} ms of CPU in {:.0} s ({share:.3} % of a core)",
                    (a - b).as_secs_f64() * 1e3,
                    window.as_secs_f64(),
                );
                rows.push(Row {
                    what: format!(
                        "CPU of an idle 3-peer network over {:.0} s",
                        window.as_secs_f64()
                    ),
                    goal: "< 1 % of a core".into(),
                    user: format!("{share:.3} % of a core"),
                    baseline: "-".into(),
                    ratio: "-".into(),
                    met: Some(share < 1.0),
                });
            }
            _ => println!("idle cpu: the engine thread was not found in /proc"),
        }
    }

    build_teardown_both(&rt, quick, &mut rows);

    println!();
    println!(
        "summary (load average {load_before} before, {} after; {})",
        load_average(),
        if quick { "quick pass" } else { "full pass" }
    );
    println!("| measurement | goal | userspace | baseline (same run) | ratio | goal met |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        println!(
            "| {} | {} | {} | {} | {} | {met} |",
            r.what, r.goal, r.user, r.baseline, r.ratio
        );
    }
}
