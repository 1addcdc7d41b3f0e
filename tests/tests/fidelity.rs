//! Fidelity: what a link is configured to do against what packets measure, on both
//! backends side by side in one run: the kernel backend (linkem's tc tree) and, beside
//! it, the same setting applied by the `tc` command at the root of a peer's `eth0` (so
//! differences between the two trees show), and the userspace backend (linkem's engine).
//!
//! Measurements, not checks: every test is ignored unless asked for, prints one table
//! row per configured value, and asserts only what physics guarantees (a delay is never
//! shorter than configured, a shaped flow never beats its rate, ...).
//!
//! ```text
//! cargo test -p linkem-tests --test fidelity -- --ignored --nocapture
//! scripts/kernel-lane -p linkem-tests --test fidelity -- --ignored --nocapture
//! ```
//!
//! Each test is pinned to one trial (`backend = "userspace"`) and builds both networks
//! itself with the builder, so every table has both columns. The kernel columns need
//! sch_netem for netem's impairments; on a kernel without it (the host lane here) they
//! say `n/a: no sch_netem`, and the kernel lane fills them in. Rate limits need no
//! netem, so TCP goodput has its kernel columns everywhere.
//!
//! The lane runs every binary twice (as root, then unprivileged); the measurements
//! run in the first pass only. Absolute times are those of the kernel the tests run
//! on (user-mode-linux in the lane, whose timers and system calls are much slower
//! than a host's).
//!
//! On the kernel network, peers 1 -> 2 carry linkem's impairment and peers 3 -> 4 carry
//! tc's (`tc qdisc replace dev eth0 root ...` in peer 3's namespace, through
//! `Network::std_command`); on the userspace network, peers 1 -> 2 carry linkem's.
//! The three trees are measured one after the other, never at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use linkem::ip::Subnet;
use linkem::network::{BackendKind, Link, Network, PeerId};
use linkem::tc::impairment::{LinkImpairment, Rate};
use linkem::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use linkem_tests::probe::{Delivery, Probe};
use linkem_tests::{oracle_command, tc};

linkem_test::main!();

const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);
const P3: PeerId = PeerId(3);
const P4: PeerId = PeerId(4);

/// z of a two-sided 99.9% interval.
const Z999: f64 = 3.2905;

/// What a kernel column says where this kernel cannot carry the measurement.
const NO_NETEM: &str = "n/a: no sch_netem";

/// How far a receive timestamp may sit before the send time it is compared with: the
/// probe turns the kernel's CLOCK_REALTIME stamp into an `Instant` by subtracting the
/// time since it from a fresh reading of both clocks, which can be off by a few
/// microseconds (the two readings are not simultaneous, NTP slews the real-time clock).
const CLOCK_SLOP_MS: f64 = 0.05;

/// Every measurement gets ports of its own (no reuse while a socket lingers).
static PORT: AtomicU16 = AtomicU16::new(7500);

fn port() -> u16 {
    PORT.fetch_add(1, Ordering::Relaxed)
}

/// The measurements run once, as real root: in the lane's unprivileged pass (a user
/// namespace, so the uid map is not the identity) they print that and return.
fn first_pass() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let identity =
        map.split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["0", "0", "4294967295"]);
    if !identity {
        println!("fidelity: measured in the root pass only; skipped here");
    }
    identity
}

/// A network of `peers` peers on `backend` in 10.0.0.0/24 (networks on one subnet stay
/// apart, so both backends' networks share it).
async fn network_on(backend: BackendKind, peers: usize) -> Result<Network, Error> {
    let mut net = Network::builder(Subnet::new([10, 0, 0, 0].into(), 24))
        .backend(backend)
        .build()
        .await?;
    assert_eq!(net.backend(), backend);
    for _ in 0..peers {
        net.add_peer().await?;
    }
    Ok(net)
}

/// One tree a measurement is taken on, a column group of its table.
#[derive(Clone, Copy)]
struct Tree<'a> {
    /// The column's heading.
    name: &'static str,
    /// The network, or `None` where this kernel cannot carry the measurement.
    net: Option<&'a Network>,
    /// The impaired direction.
    from: PeerId,
    to: PeerId,
    /// The setting is tc's own root qdisc (kernel only), not linkem's.
    oracle: bool,
}

impl Tree<'_> {
    /// Configures this tree: linkem's `impairment` on its link, or tc's `spec` as the
    /// root qdisc of the sender's `eth0`.
    async fn set(&self, impairment: &LinkImpairment, spec: &str) -> Result<(), Error> {
        let Some(net) = self.net else { return Ok(()) };
        if self.oracle {
            tc_root(net, self.from, spec);
            Ok(())
        } else {
            let link = Link::new(self.from, self.to);
            net.apply_impairment(link, impairment.clone()).await
        }
    }

    /// Back to a plain wire.
    async fn clear(&self) -> Result<(), Error> {
        let Some(net) = self.net else { return Ok(()) };
        if self.oracle {
            tc_clear(net, self.from);
            Ok(())
        } else {
            net.clear_impairment(Link::new(self.from, self.to)).await
        }
    }

    /// The packets linkem's link dropped so far (tc's tree: none counted here).
    async fn drops(&self) -> Result<Option<u64>, Error> {
        match self.net {
            Some(net) if !self.oracle => {
                let stats = net.link_stats(Link::new(self.from, self.to)).await?;
                Ok(Some(stats.map_or(0, |s| match s.fates {
                    Some(f) => f.dropped_loss + f.dropped_queue,
                    None => u64::from(s.drops),
                })))
            }
            _ => Ok(None),
        }
    }
}

/// The networks of one measurement: the kernel backend's (`None` where it cannot carry
/// the measurement) and the userspace backend's.
struct Backends {
    kernel: Option<Network>,
    userspace: Network,
}

impl Backends {
    /// Both networks; `netem`: the measurement needs sch_netem on the kernel backend.
    async fn build(netem: bool) -> Result<Backends, Error> {
        let kernel = network_on(BackendKind::Kernel, 4).await?;
        let kernel = if !netem || kernel.netem_supported().await {
            Some(kernel)
        } else {
            None
        };
        let userspace = network_on(BackendKind::Userspace, 2).await?;
        Ok(Backends { kernel, userspace })
    }

    /// The three trees, in column order: kernel (linkem), tc (the kernel's oracle),
    /// userspace.
    fn trees(&self) -> [Tree<'_>; 3] {
        let kernel = self.kernel.as_ref();
        [
            Tree {
                name: "kernel",
                net: kernel,
                from: P1,
                to: P2,
                oracle: false,
            },
            Tree {
                name: "tc (oracle)",
                net: kernel,
                from: P3,
                to: P4,
                oracle: true,
            },
            Tree {
                name: "userspace",
                net: Some(&self.userspace),
                from: P1,
                to: P2,
                oracle: false,
            },
        ]
    }
}

/// `cell` right-aligned in `width`, or [`NO_NETEM`] where there is no measurement.
fn cell(cell: Option<String>, width: usize) -> String {
    format!("{:>width$}", cell.as_deref().unwrap_or(NO_NETEM))
}

/// The table's heading line and its rule.
fn heading(first: &str, trees: &[Tree<'_>], width: usize) {
    let mut line = format!("  {first:>10}");
    for t in trees {
        line += &format!(" | {:>width$}", t.name);
    }
    println!("{line}");
    println!("  {}", "-".repeat(line.len() - 2));
}

/// tc's side: `spec` as the root qdisc of `peer`'s eth0.
fn tc_root(net: &Network, peer: PeerId, spec: &str) {
    tc(net, peer, &format!("qdisc replace dev eth0 root {spec}"));
}

fn tc_clear(net: &Network, peer: PeerId) {
    let _ = oracle_command(net, peer, "tc")
        .args(["qdisc", "del", "dev", "eth0", "root"])
        .output();
}

/// Sends `count` numbered datagrams from `from` to `to`, in bursts of `burst` with
/// `pause` between bursts; the receiver listens until two seconds of silence.
async fn datagrams(
    net: &Network,
    from: PeerId,
    to: PeerId,
    count: u32,
    burst: u32,
    pause: Duration,
) -> Result<Delivery, Error> {
    Probe::new(count, port())
        .bursts(burst, pause)
        .silence(Duration::from_secs(2))
        .keep_listening()
        .run(net, from, to)
        .await
}

/// One-way delays of `count` datagrams 2 ms apart, in milliseconds, sorted.
async fn delays(net: &Network, from: PeerId, to: PeerId, count: u32) -> Result<Vec<f64>, Error> {
    let delivery = datagrams(net, from, to, count, 1, Duration::from_millis(2)).await?;
    let mut d: Vec<f64> = delivery
        .delays()
        .into_iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    d.sort_by(f64::total_cmp);
    assert!(!d.is_empty(), "no datagram arrived");
    Ok(d)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Wilson score interval of `k` successes in `n` at 99.9%, in percent.
fn wilson(k: u64, n: u64) -> (f64, f64) {
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z999 * Z999;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z999 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    (
        100.0 * (centre - half).max(0.0),
        100.0 * (centre + half).min(1.0),
    )
}

/// Datagrams per latency median.
const LATENCY_SAMPLES: u32 = 200;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Width of a latency or jitter cell.
const DELAY_CELL: usize = 19;

#[linkem::test(
    backend = "userspace",
    timeout = "900s",
    ignore = "measurement: run with --ignored --nocapture"
)]
async fn latency() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let nets = Backends::build(true).await?;
    let trees = nets.trees();
    // The unimpaired medians, before and after (their difference shows the noise of
    // the subtraction on this kernel); the mean of the two is subtracted.
    let mut before = Vec::new();
    for t in &trees {
        before.push(match t.net {
            Some(net) => Some(quantile(
                &delays(net, t.to, t.from, LATENCY_SAMPLES).await?,
                0.5,
            )),
            None => None,
        });
    }
    let mut rows = Vec::new();
    for configured in [1u64, 10, 100] {
        let impairment = LinkImpairment::new().with_latency(ms(configured));
        let spec = format!("netem delay {configured}ms");
        let mut row = Vec::new();
        for t in &trees {
            t.set(&impairment, &spec).await?;
            row.push(match t.net {
                Some(net) => {
                    let d = delays(net, t.from, t.to, LATENCY_SAMPLES).await?;
                    Some((quantile(&d, 0.5), quantile(&d, 0.05)))
                }
                None => None,
            });
            t.clear().await?;
        }
        rows.push((configured as f64, row));
    }
    let mut after = Vec::new();
    for t in &trees {
        after.push(match t.net {
            Some(net) => Some(quantile(
                &delays(net, t.to, t.from, LATENCY_SAMPLES).await?,
                0.5,
            )),
            None => None,
        });
    }
    println!(
        "latency: one-way median of {LATENCY_SAMPLES} datagrams 2 ms apart, minus the \
         unimpaired median (reverse direction, before and after, averaged); error = \
         measured - configured"
    );
    heading("configured", &trees, DELAY_CELL);
    let mut line = format!("  {:>10}", "unimpaired");
    for (b, a) in before.iter().zip(&after) {
        let both = b.zip(*a).map(|(b, a)| format!("{b:.3} / {a:.3} ms"));
        line += &format!(" | {}", cell(both, DELAY_CELL));
    }
    println!("{line}");
    for (c, row) in rows {
        let mut line = format!("  {c:>7} ms");
        for (i, measured) in row.iter().enumerate() {
            let base = before[i].zip(after[i]).map(|(b, a)| (b + a) / 2.0);
            let shown = measured.zip(base).map(|((median, _), base)| {
                let m = median - base;
                format!("{m:.3} ms {:>+7.3}", m - c)
            });
            line += &format!(" | {}", cell(shown, DELAY_CELL));
        }
        println!("{line}");
        for (t, measured) in trees.iter().zip(&row) {
            if let Some((_, p5)) = measured {
                // Never early: every datagram waits its configured delay on the way, so
                // even the fastest 5% take that long. Not the minimum: in the 6.12 lane
                // one datagram of 200 on the kernel backend carried a receive stamp
                // 0.448 ms after its send at 1 ms configured (the stamp, not the link).
                assert!(
                    *p5 >= c - CLOCK_SLOP_MS,
                    "{}: the fastest 5% of datagrams took {p5:.3} ms with {c} ms configured",
                    t.name
                );
            }
        }
    }
    Ok(())
}

#[linkem::test(
    backend = "userspace",
    timeout = "900s",
    ignore = "measurement: run with --ignored --nocapture"
)]
async fn jitter() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let nets = Backends::build(true).await?;
    let trees = nets.trees();
    let impairment = LinkImpairment::new()
        .with_latency(ms(20))
        .with_jitter(ms(5));
    // (p5, median, p95, stddev) of each tree.
    let mut stats = Vec::new();
    for t in &trees {
        t.set(&impairment, "netem delay 20ms 5ms").await?;
        stats.push(match t.net {
            Some(net) => {
                let d = delays(net, t.from, t.to, 300).await?;
                let mean = d.iter().sum::<f64>() / d.len() as f64;
                let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64;
                let (p5, p95) = (quantile(&d, 0.05), quantile(&d, 0.95));
                // Never early: uniform jitter draws from [delay - jitter, delay + jitter),
                // so the fastest 5% take at least 15 ms (see `latency` for why not the
                // minimum).
                assert!(
                    p5 >= 15.0 - CLOCK_SLOP_MS,
                    "{}: the fastest 5% of datagrams took {p5:.3} ms with 20 ms +- 5 ms",
                    t.name
                );
                assert!(p95 - p5 > 2.0, "{}: no jitter (p5 {p5}, p95 {p95})", t.name);
                Some([p5, quantile(&d, 0.5), p95, p95 - p5, var.sqrt()])
            }
            None => None,
        });
        t.clear().await?;
    }
    println!(
        "jitter: 20 ms +- 5 ms (uniform), one-way delay of 300 datagrams 2 ms apart; \
         expected values exclude the unimpaired stack delay"
    );
    heading("statistic", &trees, DELAY_CELL);
    let names = [
        ("p5", 15.5),
        ("median", 20.0),
        ("p95", 24.5),
        ("p95 - p5", 9.0),
        ("stddev", 10.0 / 12f64.sqrt()),
    ];
    for (i, (name, expected)) in names.iter().enumerate() {
        let mut line = format!("  {name:>10}");
        for s in &stats {
            let shown = s.map(|s| format!("{:.2} ms ({:+.2})", s[i], s[i] - expected));
            line += &format!(" | {}", cell(shown, DELAY_CELL));
        }
        println!("{line}   expected {expected:.2} ms");
    }
    Ok(())
}

/// Datagrams sent for a loss or duplication rate.
const RATE_SAMPLES: u32 = 20_000;

/// Width of a loss or duplication cell.
const RATE_CELL: usize = 31;

/// `k` of `n` in percent with its interval.
fn rate_cell(k: u64, n: u64) -> String {
    let (lo, hi) = wilson(k, n);
    format!("{:.3}% [{lo:.3} .. {hi:.3}]", 100.0 * k as f64 / n as f64)
}

#[linkem::test(
    backend = "userspace",
    timeout = "900s",
    ignore = "measurement: run with --ignored --nocapture"
)]
async fn loss() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let nets = Backends::build(true).await?;
    let trees = nets.trees();
    println!(
        "loss: {RATE_SAMPLES} datagrams (bursts of 20, 1 ms apart); lost = sent - received, \
         [99.9% Wilson interval], and (the link's own drop count)"
    );
    heading("configured", &trees, RATE_CELL);
    let mut failures = Vec::new();
    for configured in [0.1, 1.0, 10.0] {
        let impairment = LinkImpairment::new().with_loss(configured);
        let spec = format!("netem loss {configured}%");
        let mut line = format!("  {configured:>9}%");
        for t in &trees {
            t.set(&impairment, &spec).await?;
            let shown = match t.net {
                Some(net) => {
                    let before = t.drops().await?;
                    let got = datagrams(net, t.from, t.to, RATE_SAMPLES, 20, ms(1)).await?;
                    let after = t.drops().await?;
                    let sent = got.sent.len() as u64;
                    let lost = sent - got.arrived.len() as u64;
                    let measured = 100.0 * lost as f64 / sent as f64;
                    // Far from any chance: at 0.1% of 20,000 a quarter of the expected
                    // 20 losses or fewer has a probability under 1e-4. Judged after
                    // the row is printed, so a failure shows its numbers.
                    if !(measured < configured * 3.0 + 0.5 && measured > configured / 4.0) {
                        failures.push(format!(
                            "{}: loss {measured}% for {configured}% (the link dropped \
                             {:?}, the receiver's socket {})",
                            t.name,
                            before.zip(after).map(|(b, a)| a.saturating_sub(b)),
                            got.rcvbuf_errors
                        ));
                    }
                    let mut s = rate_cell(lost, sent);
                    if let Some((b, a)) = before.zip(after) {
                        s += &format!(" ({})", a.saturating_sub(b));
                    }
                    Some(s)
                }
                None => None,
            };
            line += &format!(" | {}", cell(shown, RATE_CELL));
            t.clear().await?;
        }
        println!("{line}");
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

#[linkem::test(
    backend = "userspace",
    timeout = "900s",
    ignore = "measurement: run with --ignored --nocapture"
)]
async fn duplication() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let nets = Backends::build(true).await?;
    let trees = nets.trees();
    println!(
        "duplication: {RATE_SAMPLES} datagrams (bursts of 20, 1 ms apart); duplicates = \
         received - distinct, [99.9% Wilson interval]"
    );
    heading("configured", &trees, RATE_CELL);
    for configured in [1.0, 10.0] {
        let impairment = LinkImpairment::new().with_duplicate(configured);
        let spec = format!("netem duplicate {configured}%");
        let mut line = format!("  {configured:>9}%");
        for t in &trees {
            t.set(&impairment, &spec).await?;
            let shown = match t.net {
                Some(net) => {
                    let got = datagrams(net, t.from, t.to, RATE_SAMPLES, 20, ms(1)).await?;
                    let sent = got.sent.len() as u64;
                    let distinct = got
                        .arrived
                        .iter()
                        .map(|a| a.seq)
                        .collect::<std::collections::HashSet<_>>()
                        .len();
                    let dups = (got.arrived.len() - distinct) as u64;
                    let measured = 100.0 * dups as f64 / sent as f64;
                    assert!(
                        dups > 0 && measured < configured * 3.0 + 0.5,
                        "{}: duplication {measured}% for {configured}%",
                        t.name
                    );
                    Some(rate_cell(dups, sent))
                }
                None => None,
            };
            line += &format!(" | {}", cell(shown, RATE_CELL));
            t.clear().await?;
        }
        println!("{line}");
    }
    Ok(())
}

/// TCP goodput from `from` to `to`: bytes the receiver reads in `window` after a
/// warm-up of `warm`, in Mbit/s.
async fn goodput(
    net: &Network,
    from: PeerId,
    to: PeerId,
    warm: Duration,
    window: Duration,
) -> Result<f64, Error> {
    let dst = SocketAddr::new(net.addr(to)?, port());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let receive = net.run_in_namespace(to, move |_| async move {
        let listener = tokio::net::TcpListener::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let start = Instant::now();
        let mut counted = 0u64;
        let mut since = None;
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            let now = Instant::now();
            if now - start < warm {
                continue;
            }
            let t0 = *since.get_or_insert(now);
            if now - t0 >= window {
                return counted as f64 * 8.0 / (now - t0).as_secs_f64() / 1e6;
            }
            counted += n as u64;
        }
        0.0
    });
    let send = net.run_in_namespace(from, move |_| async move {
        ready_rx.await.unwrap();
        let mut s = tokio::net::TcpStream::connect(dst).await.unwrap();
        let chunk = vec![0x5au8; 1 << 16];
        let deadline = Instant::now() + warm + window + Duration::from_secs(10);
        while Instant::now() < deadline {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let (got, sent) = tokio::join!(receive, send);
    sent?;
    got
}

/// Width of a goodput cell.
const GOODPUT_CELL: usize = 21;

#[linkem::test(
    backend = "userspace",
    timeout = "900s",
    ignore = "measurement: run with --ignored --nocapture"
)]
async fn tcp_goodput() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    // A rate alone is HTB and TBF on the kernel backend: no sch_netem needed.
    let nets = Backends::build(false).await?;
    let trees = nets.trees();
    let (warm, window) = (Duration::from_secs(1), Duration::from_secs(3));
    println!(
        "TCP goodput: one stream, {window:?} after {warm:?} of warm-up; tc's tree is \
         `tbf` with linkem's bucket and queue latency"
    );
    println!(
        "  goodput is payload; at MSS 1448 a 1514-byte frame carries 95.6% of the \
         shaped rate; unimpaired = the ceiling of this kernel, CPU and data plane"
    );
    heading("rate", &trees, GOODPUT_CELL);
    let mut line = format!("  {:>10}", "unimpaired");
    for t in &trees {
        let shown = match t.net {
            Some(net) => Some(format!(
                "{:.1} Mbit",
                goodput(net, t.from, t.to, warm, window).await?
            )),
            None => None,
        };
        line += &format!(" | {}", cell(shown, GOODPUT_CELL));
    }
    println!("{line}");
    for mbit in [1u64, 10, 100, 1000] {
        let impairment = LinkImpairment::new().with_rate(Rate::mbit(mbit));
        // The same bucket and queue latency as linkem's default TBF.
        let burst = (mbit * 1_000_000 / 8 / 100).max(4 * 1514);
        let spec = format!("tbf rate {mbit}mbit burst {burst} latency 50ms");
        let c = mbit as f64;
        let mut line = format!("  {mbit:>5} Mbit");
        for t in &trees {
            t.set(&impairment, &spec).await?;
            let shown = match t.net {
                Some(net) => {
                    let g = goodput(net, t.from, t.to, warm, window).await?;
                    // A shaped flow never beats its rate (the bucket's burst is 10 ms
                    // of it, spread over a 3 s window).
                    assert!(
                        g > 0.0 && g < c * 1.1,
                        "{}: goodput {g} Mbit/s at {mbit} Mbit/s",
                        t.name
                    );
                    Some(format!("{g:.2} Mbit {:>5.1}%", 100.0 * g / c))
                }
                None => None,
            };
            line += &format!(" | {}", cell(shown, GOODPUT_CELL));
            t.clear().await?;
        }
        println!("{line}");
    }
    Ok(())
}
