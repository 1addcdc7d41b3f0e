//! Fidelity: what a link is configured to do against what packets measure, for
//! linkem's tree and, beside it, for the same setting applied by the `tc` command at
//! the root of a peer's `eth0` (so differences between the two trees show).
//!
//! Measurements, not checks: every test is ignored unless asked for, prints a table,
//! and asserts only that the numbers are sane. They need sch_netem; run them in the
//! kernel lane:
//!
//! ```text
//! scripts/kernel-lane -p linkem-tests --test fidelity -- --ignored --nocapture
//! ```
//!
//! The lane runs every binary twice (as root, then unprivileged); the measurements
//! run in the first pass only. Absolute times are those of the kernel the tests run
//! on (user-mode-linux in the lane, whose timers and system calls are much slower
//! than a host's).
//!
//! Peers 1 -> 2 carry linkem's impairment; peers 3 -> 4 carry tc's (`tc qdisc replace
//! dev eth0 root ...` in peer 3's namespace, through `Network::std_command`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use linkem::network::{Link, Network, PeerId};
use linkem::tc::impairment::{LinkImpairment, Rate};
use linkem::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use linkem_tests::network;

use linkem_tests::tc;

linkem_test::main!();

const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);
const P3: PeerId = PeerId(3);
const P4: PeerId = PeerId(4);

/// z of a two-sided 99.9% interval.
const Z999: f64 = 3.2905;

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

/// tc's side: `spec` as the root qdisc of peer 3's eth0.
fn tc_root(net: &Network, spec: &str) {
    tc(net, P3, &format!("qdisc replace dev eth0 root {spec}"));
}

fn tc_clear(net: &Network) {
    let _ = net
        .std_command(P3, "tc")
        .unwrap()
        .args(["qdisc", "del", "dev", "eth0", "root"])
        .output();
}

/// Sends `count` numbered datagrams from `from` to `to`, in bursts of `burst` with
/// `pause` between bursts, and returns the send time of each and what arrived
/// (number, arrival time), in arrival order. Both ends live in this process, so their
/// Instants compare.
async fn datagrams(
    net: &Network,
    from: PeerId,
    to: PeerId,
    count: u32,
    burst: u32,
    pause: Duration,
) -> Result<(HashMap<u32, Instant>, Vec<(u32, Instant)>), Error> {
    let dst = SocketAddr::new(net.addr(to)?, port());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (sent_tx, sent_rx) = mpsc::channel::<(u32, Instant)>();
    let receive = net.run_in_namespace(to, move |_| async move {
        let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        while let Ok(Ok((4, _))) =
            tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await
        {
            got.push((u32::from_ne_bytes(buf), Instant::now()));
        }
        got
    });
    let send = net.run_in_namespace(from, move |_| async move {
        ready_rx.await.unwrap();
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for i in 0..count {
            sent_tx.send((i, Instant::now())).unwrap();
            socket.send_to(&i.to_ne_bytes(), dst).await.unwrap();
            if (i + 1) % burst == 0 {
                tokio::time::sleep(pause).await;
            }
        }
    });
    let (got, sent) = tokio::join!(receive, send);
    sent?;
    Ok((sent_rx.try_iter().collect(), got?))
}

/// One-way delays of `count` datagrams 2 ms apart.
async fn delays(net: &Network, from: PeerId, to: PeerId, count: u32) -> Result<Vec<f64>, Error> {
    let (sent, got) = datagrams(net, from, to, count, 1, Duration::from_millis(2)).await?;
    let mut d: Vec<f64> = got
        .into_iter()
        .map(|(i, at)| (at - sent[&i]).as_secs_f64() * 1e3)
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

#[linkem::test(
    netem,
    timeout = "600s",
    ignore = "measurement: run with --ignored (kernel lane)"
)]
async fn latency() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let net = network(4).await?;
    // The unimpaired medians, before and after (their difference shows the noise of
    // the subtraction on this kernel); the mean of the two is subtracted.
    let median = |d: Vec<f64>| quantile(&d, 0.5);
    let before_l = median(delays(&net, P2, P1, LATENCY_SAMPLES).await?);
    let before_t = median(delays(&net, P4, P3, LATENCY_SAMPLES).await?);
    let mut rows = Vec::new();
    for configured in [1u64, 10, 100] {
        net.apply_impairment(
            Link::new(P1, P2),
            LinkImpairment::new().with_latency(ms(configured)),
        )
        .await?;
        tc_root(&net, &format!("netem delay {configured}ms"));
        let l = median(delays(&net, P1, P2, LATENCY_SAMPLES).await?);
        let t = median(delays(&net, P3, P4, LATENCY_SAMPLES).await?);
        rows.push((configured as f64, l, t));
    }
    tc_clear(&net);
    let after_l = median(delays(&net, P2, P1, LATENCY_SAMPLES).await?);
    let after_t = median(delays(&net, P4, P3, LATENCY_SAMPLES).await?);
    let (base_l, base_t) = ((before_l + after_l) / 2.0, (before_t + after_t) / 2.0);
    println!(
        "latency: one-way median of {LATENCY_SAMPLES} datagrams 2 ms apart, minus the \
         unimpaired median (reverse direction, before and after, averaged)"
    );
    println!(
        "  unimpaired: linkem pair {before_l:.3} / {after_l:.3} ms, \
         tc pair {before_t:.3} / {after_t:.3} ms (before / after)"
    );
    println!(
        "  {:>10} | {:>10} {:>9} | {:>10} {:>9}",
        "configured", "linkem", "error", "tc", "error"
    );
    for (c, l, t) in rows {
        let (l, t) = (l - base_l, t - base_t);
        println!(
            "  {c:>7} ms | {l:>7.3} ms {:>+8.3} | {t:>7.3} ms {:>+8.3}",
            l - c,
            t - c
        );
        assert!(l > c * 0.5 && t > c * 0.5, "delay missing: {l} / {t} ms");
    }
    Ok(())
}

#[linkem::test(
    netem,
    timeout = "600s",
    ignore = "measurement: run with --ignored (kernel lane)"
)]
async fn jitter() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let net = network(4).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new()
            .with_latency(ms(20))
            .with_jitter(ms(5)),
    )
    .await?;
    tc_root(&net, "netem delay 20ms 5ms");
    println!("jitter: 20 ms +- 5 ms (uniform), 300 datagrams 2 ms apart, one-way delay");
    println!(
        "  expected: spread p5..p95 = 9.0 ms, standard deviation 2.89 ms, median 20 ms + stack"
    );
    println!(
        "  {:>6} | {:>8} {:>8} {:>8} {:>10} {:>8}",
        "tree", "p5", "median", "p95", "p95 - p5", "stddev"
    );
    for (name, from, to) in [("linkem", P1, P2), ("tc", P3, P4)] {
        let d = delays(&net, from, to, 300).await?;
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        let (p5, p50, p95) = (quantile(&d, 0.05), quantile(&d, 0.5), quantile(&d, 0.95));
        println!(
            "  {name:>6} | {p5:>5.2} ms {p50:>5.2} ms {p95:>5.2} ms {:>7.2} ms {sd:>5.2} ms",
            p95 - p5
        );
        assert!(p95 - p5 > 2.0, "{name}: no jitter");
    }
    tc_clear(&net);
    Ok(())
}

/// Datagrams sent for a loss or duplication rate.
const RATE_SAMPLES: u32 = 20_000;

#[linkem::test(
    netem,
    timeout = "600s",
    ignore = "measurement: run with --ignored (kernel lane)"
)]
async fn loss() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let net = network(4).await?;
    println!(
        "loss: {RATE_SAMPLES} datagrams (bursts of 20, 1 ms apart); lost = sent - received; \
         interval: Wilson, 99.9%"
    );
    println!(
        "  {:>10} | {:>8} {:>19} {:>10} | {:>8} {:>19}",
        "configured", "linkem", "99.9% interval", "netem drops", "tc", "99.9% interval"
    );
    for configured in [0.1, 1.0, 10.0] {
        let link = Link::new(P1, P2);
        net.clear_impairment(link).await?;
        net.apply_impairment(link, LinkImpairment::new().with_loss(configured))
            .await?;
        tc_root(&net, &format!("netem loss {configured}%"));
        let mut row = format!("  {:>9}% |", configured);
        for (from, to) in [(P1, P2), (P3, P4)] {
            let (sent, got) = datagrams(&net, from, to, RATE_SAMPLES, 20, ms(1)).await?;
            let lost = sent.len() as u64 - got.len() as u64;
            let (lo, hi) = wilson(lost, sent.len() as u64);
            let measured = 100.0 * lost as f64 / sent.len() as f64;
            row += &format!(" {measured:>7.3}% [{lo:>6.3}% .. {hi:>6.3}%]");
            if from == P1 {
                let drops = net.link_stats(link).await?.map_or(0, |s| s.drops);
                row += &format!(" {drops:>10} |");
            }
            assert!(
                measured < configured * 3.0 + 0.5,
                "loss {measured}% for {configured}%"
            );
        }
        println!("{row}");
    }
    tc_clear(&net);
    Ok(())
}

#[linkem::test(
    netem,
    timeout = "600s",
    ignore = "measurement: run with --ignored (kernel lane)"
)]
async fn duplication() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let net = network(4).await?;
    println!(
        "duplication: {RATE_SAMPLES} datagrams (bursts of 20, 1 ms apart); \
         duplicates = received - distinct; interval: Wilson, 99.9%"
    );
    println!(
        "  {:>10} | {:>8} {:>19} | {:>8} {:>19}",
        "configured", "linkem", "99.9% interval", "tc", "99.9% interval"
    );
    for configured in [1.0, 10.0] {
        net.apply_impairment(
            Link::new(P1, P2),
            LinkImpairment::new().with_duplicate(configured),
        )
        .await?;
        tc_root(&net, &format!("netem duplicate {configured}%"));
        let mut row = format!("  {:>9}% |", configured);
        for (from, to) in [(P1, P2), (P3, P4)] {
            let (sent, got) = datagrams(&net, from, to, RATE_SAMPLES, 20, ms(1)).await?;
            let distinct = got
                .iter()
                .map(|(i, _)| *i)
                .collect::<std::collections::HashSet<_>>()
                .len();
            let dups = (got.len() - distinct) as u64;
            let (lo, hi) = wilson(dups, sent.len() as u64);
            let measured = 100.0 * dups as f64 / sent.len() as f64;
            row += &format!(" {measured:>7.3}% [{lo:>6.3}% .. {hi:>6.3}%] |");
            assert!(dups > 0, "no duplicate at {configured}%");
        }
        println!("{row}");
    }
    tc_clear(&net);
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

#[linkem::test(
    netem,
    timeout = "900s",
    ignore = "measurement: run with --ignored (kernel lane)"
)]
async fn tcp_goodput() -> Result<(), Error> {
    if !first_pass() {
        return Ok(());
    }
    let net = network(4).await?;
    let (warm, window) = (Duration::from_secs(1), Duration::from_secs(3));
    let ceiling = goodput(&net, P1, P2, warm, window).await?;
    println!(
        "TCP goodput: one stream, {window:?} after {warm:?} of warm-up; \
         unimpaired: {ceiling:.1} Mbit/s (the ceiling of this kernel and CPU)"
    );
    println!(
        "  goodput is payload; at MSS 1448 a 1514-byte frame carries 95.6% of the \
         shaped rate"
    );
    println!(
        "  {:>10} | {:>13} {:>7} | {:>13} {:>7}",
        "rate", "linkem", "of rate", "tc (tbf)", "of rate"
    );
    for mbit in [1u64, 10, 100, 1000] {
        let imp = LinkImpairment::new().with_rate(Rate::mbit(mbit));
        net.apply_impairment(Link::new(P1, P2), imp).await?;
        // The same bucket and queue latency as linkem's default TBF.
        let burst = (mbit * 1_000_000 / 8 / 100).max(4 * 1514);
        tc_root(
            &net,
            &format!("tbf rate {mbit}mbit burst {burst} latency 50ms"),
        );
        let l = goodput(&net, P1, P2, warm, window).await?;
        let t = goodput(&net, P3, P4, warm, window).await?;
        let c = mbit as f64;
        println!(
            "  {mbit:>5} Mbit | {l:>8.2} Mbit {:>6.1}% | {t:>8.2} Mbit {:>6.1}%",
            100.0 * l / c,
            100.0 * t / c
        );
        assert!(
            l > 0.0 && l < c * 1.1,
            "linkem goodput {l} at {mbit} Mbit/s"
        );
    }
    tc_clear(&net);
    Ok(())
}
