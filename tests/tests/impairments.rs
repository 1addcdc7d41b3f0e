//! Impairments on a real kernel: what a test configures is what packets experience.
//!
//! Tests that need sch_netem are reported as ignored (with the reason) on kernels
//! without it; the kernel lane runs them.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use linkem::network::{Link, Network, PeerId};
use linkem::tc::impairment::{Distribution, LinkImpairment, Rate};
use linkem::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use linkem_tests::network;

linkem_test::main!();

const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);
const P3: PeerId = PeerId(3);

/// One-way delays of `count` datagrams from `from` to `to`, measured with the process's
/// monotonic clock (both ends live in this process, so their Instants compare).
async fn one_way_delays(
    net: &Network,
    from: PeerId,
    to: PeerId,
    count: usize,
) -> Result<Vec<Duration>, Error> {
    let dst = SocketAddr::new(net.addr(to)?, 7400);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (sent_tx, sent_rx) = mpsc::channel::<(u32, Instant)>();
    let receive = net.run_in_namespace(to, move |_| async move {
        let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        while let Ok(Ok((4, _))) =
            tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await
        {
            got.push((u32::from_ne_bytes(buf), Instant::now()));
            if got.len() == count {
                break;
            }
        }
        got
    });
    let send = net.run_in_namespace(from, move |_| async move {
        ready_rx.await.unwrap();
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for i in 0..count as u32 {
            sent_tx.send((i, Instant::now())).unwrap();
            socket.send_to(&i.to_ne_bytes(), dst).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let (got, sent) = tokio::join!(receive, send);
    sent?;
    let sent: std::collections::HashMap<u32, Instant> = sent_rx.try_iter().collect();
    Ok(got?.into_iter().map(|(i, at)| at - sent[&i]).collect())
}

fn median(mut v: Vec<Duration>) -> Duration {
    assert!(!v.is_empty(), "no sample");
    v.sort();
    v[v.len() / 2]
}

/// The one-way delay of an unimpaired direction, measured in the same run: what the
/// stack and the scheduler add on this kernel (user-mode-linux adds about a millisecond).
async fn baseline(net: &Network, from: PeerId, to: PeerId) -> Result<Duration, Error> {
    Ok(median(one_way_delays(net, from, to, 30).await?))
}

/// `measured` is within 2% (+ 1 ms) of `configured` plus the baseline.
fn assert_close(measured: Duration, configured: Duration, base: Duration, what: &str) {
    let want = configured + base;
    let err = measured.as_secs_f64() - want.as_secs_f64();
    // 2% of the configured value plus 1 ms of scheduling on a slow kernel.
    let bound = want.as_secs_f64() * 0.02 + 0.001;
    assert!(
        err.abs() <= bound,
        "{what}: measured {measured:?}, configured {want:?}"
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[linkem::test(netem)]
async fn latency_is_per_destination_and_per_direction() -> Result<(), Error> {
    let net = network(3).await?;
    let base = baseline(&net, P1, P2).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_latency(ms(40)),
    )
    .await?;
    net.apply_impairment(
        Link::new(P2, P1),
        LinkImpairment::new().with_latency(ms(15)),
    )
    .await?;
    assert_close(
        median(one_way_delays(&net, P1, P2, 60).await?),
        ms(40),
        base,
        "1 -> 2",
    );
    assert_close(
        median(one_way_delays(&net, P2, P1, 60).await?),
        ms(15),
        base,
        "2 -> 1",
    );
    let untouched = median(one_way_delays(&net, P1, P3, 60).await?);
    assert!(
        untouched < ms(3),
        "1 -> 3 is not impaired, measured {untouched:?}"
    );
    Ok(())
}

#[linkem::test(netem)]
async fn the_seed_example_link_is_measurable() -> Result<(), Error> {
    let net = network(2).await?;
    let base = baseline(&net, P1, P2).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment {
            latency: 100_000,
            loss: 1.0,
            bandwidth_mbit_s: Some(10.0),
            ..Default::default()
        },
    )
    .await?;
    let delays = one_way_delays(&net, P1, P2, 100).await?;
    assert!(
        delays.len() >= 90,
        "1% loss, yet {} of 100 arrived",
        delays.len()
    );
    assert_close(median(delays), ms(100), base, "1 -> 2");
    Ok(())
}

#[linkem::test(netem)]
async fn a_change_mid_stream_takes_effect_in_place() -> Result<(), Error> {
    let net = network(2).await?;
    let link = Link::new(P1, P2);
    let base = baseline(&net, P1, P2).await?;
    net.apply_impairment(link, LinkImpairment::new().with_latency(ms(50)))
        .await?;
    assert_close(
        median(one_way_delays(&net, P1, P2, 30).await?),
        ms(50),
        base,
        "before",
    );
    net.apply_impairment(link, LinkImpairment::new().with_latency(ms(10)))
        .await?;
    assert_close(
        median(one_way_delays(&net, P1, P2, 30).await?),
        ms(10),
        base,
        "after",
    );
    // The same value again is a no-op, and the tree keeps its root.
    net.apply_impairment(link, LinkImpairment::new().with_latency(ms(10)))
        .await?;
    net.clear_impairment(link).await?;
    assert!(median(one_way_delays(&net, P1, P2, 30).await?) < ms(3));
    assert_eq!(net.impairment(link).await?, LinkImpairment::default());
    Ok(())
}

/// Sends `n` datagrams from 1 to 2 and counts what arrives.
async fn count_delivered(net: &Network, n: usize) -> Result<usize, Error> {
    count_delivered_to(net, P2, n).await
}

/// `RcvbufErrors` of the calling thread's network namespace: datagrams the kernel
/// dropped because a receiving socket's buffer was full.
fn udp_rcvbuf_errors() -> u64 {
    // thread-self: peer code runs on a thread that entered the peer's namespace.
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let names = udp[0].split_whitespace();
    let values = udp[1].split_whitespace();
    names
        .zip(values)
        .find(|(name, _)| *name == "RcvbufErrors")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

/// Sends `n` datagrams from 1 to `to` in bursts of 50 and counts what arrives.
///
/// After each burst the sender waits until the receiver has read the burst's last
/// datagram (or 100 ms passed: it may be lost), so the receiver's socket buffer never
/// overflows: on a slow kernel (user-mode-linux, one CPU shared by both ends) a sender
/// that only pauses for a fixed time outruns the receiver, and the socket drops
/// datagrams (`RcvbufErrors`) that the link delivered. Such drops would be counted as
/// loss, or as missing duplicates, so they fail the measurement outright.
async fn count_delivered_to(net: &Network, to: PeerId, n: usize) -> Result<usize, Error> {
    const BURST: u32 = 50;
    let dst = SocketAddr::new(net.addr(to)?, 7500);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // The highest sequence number read so far.
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(None::<u32>);
    let receive = net.run_in_namespace(to, move |_| async move {
        let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        let overflows = udp_rcvbuf_errors();
        ready_tx.send(()).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 64];
        while let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buf)).await
        {
            got += 1;
            if len == 4 {
                let seq = u32::from_ne_bytes(buf[..4].try_into().unwrap());
                seen_tx.send_if_modified(|max| {
                    let higher = max.is_none_or(|m| seq > m);
                    if higher {
                        *max = Some(seq);
                    }
                    higher
                });
            }
        }
        (got, udp_rcvbuf_errors() - overflows)
    });
    let send = net.run_in_namespace(P1, move |_| async move {
        ready_rx.await.unwrap();
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for i in 0..n as u32 {
            socket.send_to(&i.to_ne_bytes(), dst).await.unwrap();
            if i % BURST == BURST - 1 {
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    seen_rx.wait_for(|max| max.is_some_and(|m| m >= i)),
                )
                .await;
            }
        }
    });
    let (got, sent) = tokio::join!(receive, send);
    sent?;
    let (got, overflows) = got?;
    assert_eq!(
        overflows, 0,
        "the receiver's socket buffer overflowed ({overflows} datagrams dropped by \
         the kernel, not by the link): the count of {got} is not a measurement"
    );
    Ok(got)
}

/// The 99.9% interval of a binomial count (normal approximation, z = 3.29).
fn interval(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 3.29 * sd, mean + 3.29 * sd)
}

#[linkem::test(netem)]
async fn loss_matches_its_binomial_interval() -> Result<(), Error> {
    let net = network(2).await?;
    net.apply_impairment(Link::new(P1, P2), LinkImpairment::new().with_loss(10.0))
        .await?;
    let n = 4000;
    let lost = n - count_delivered(&net, n).await?;
    let (lo, hi) = interval(n, 0.10);
    assert!(
        (lo..=hi).contains(&(lost as f64)),
        "lost {lost} of {n}, 99.9% interval {lo:.0}..{hi:.0}"
    );
    Ok(())
}

#[linkem::test(netem)]
async fn duplication_on_every_outgoing_link_of_one_peer() -> Result<(), Error> {
    let net = network(3).await?;
    for to in [P2, P3] {
        net.apply_impairment(
            Link::new(P1, to),
            LinkImpairment::new().with_duplicate(50.0),
        )
        .await?;
    }
    net.apply_impairment(
        Link::new(P1, P3),
        LinkImpairment::new()
            .with_duplicate(50.0)
            .with_latency(ms(5)),
    )
    .await?;
    let n = 2000;
    let extra = count_delivered(&net, n).await? - n;
    let (lo, hi) = interval(n, 0.5);
    assert!(
        (lo..=hi).contains(&(extra as f64)),
        "{extra} duplicates of {n}, interval {lo:.0}..{hi:.0}"
    );
    // 1 -> 3 duplicates too (with its 5 ms latency).
    let n = 200;
    let extra = count_delivered_to(&net, P3, n).await? - n;
    let (lo, hi) = interval(n, 0.5);
    assert!(
        (lo..=hi).contains(&(extra as f64)),
        "1 -> 3: {extra} duplicates of {n}, interval {lo:.0}..{hi:.0}"
    );
    Ok(())
}

#[linkem::test(netem)]
async fn corruption_damages_its_share_of_packets() -> Result<(), Error> {
    let net = network(2).await?;
    net.apply_impairment(Link::new(P1, P2), LinkImpairment::new().with_corrupt(20.0))
        .await?;
    // netem flips one bit in the packet's linear data (Ethernet header included). A
    // damaged packet is dropped (MAC, IP or UDP checksum) or arrives altered; only a
    // flip in the source MAC (6 of ~1042 bytes here) goes unseen.
    let n = 2000;
    let payload = |i: u32| -> Vec<u8> {
        (0..1000u32)
            .map(|j| (i.wrapping_mul(31) ^ j) as u8)
            .collect()
    };
    let dst = SocketAddr::new(net.addr(P2)?, 7700);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let receive = net.run_in_namespace(P2, move |_| async move {
        let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let mut intact = 0usize;
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buf)).await
        {
            let i = u32::from_ne_bytes(buf[..4].try_into().unwrap());
            if len == 1004 && buf[4..len] == payload(i)[..] {
                intact += 1;
            }
        }
        intact
    });
    let send = net.run_in_namespace(P1, move |_| async move {
        ready_rx.await.unwrap();
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for i in 0..n as u32 {
            let mut datagram = i.to_ne_bytes().to_vec();
            datagram.extend(payload(i));
            socket.send_to(&datagram, dst).await.unwrap();
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let (intact, sent) = tokio::join!(receive, send);
    sent?;
    let damaged = n - intact?;
    let (lo, hi) = interval(n, 0.2);
    assert!(
        (lo..=hi).contains(&(damaged as f64)),
        "{damaged} of {n} damaged, 99.9% interval {lo:.0}..{hi:.0}"
    );
    Ok(())
}

#[linkem::test]
async fn tcp_goodput_follows_the_rate() -> Result<(), Error> {
    let net = network(2).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_rate(Rate::mbit(10)),
    )
    .await?;
    let dst = SocketAddr::new(net.addr(P2)?, 7600);
    let bytes: usize = 6_000_000;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sink = net.run_in_namespace(P2, move |_| async move {
        let listener = tokio::net::TcpListener::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        let mut first = None;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            total += n;
        }
        (total, first.unwrap().elapsed())
    });
    let source = net.run_in_namespace(P1, move |_| async move {
        ready_rx.await.unwrap();
        let mut s = tokio::net::TcpStream::connect(dst).await.unwrap();
        s.write_all(&vec![7u8; bytes]).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let (got, sent) = tokio::join!(sink, source);
    sent?;
    let (total, took) = got?;
    assert_eq!(total, bytes);
    let mbit = total as f64 * 8.0 / took.as_secs_f64() / 1e6;
    assert!(
        (9.0..=11.0).contains(&mbit),
        "goodput {mbit:.2} Mbit/s through a 10 Mbit/s link"
    );
    Ok(())
}

#[linkem::test]
async fn partition_and_heal_cut_and_restore_both_ways() -> Result<(), Error> {
    let net = network(3).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_rate(Rate::mbit(50)),
    )
    .await?;
    net.partition(P1, P2).await?;
    assert_eq!(
        count_delivered(&net, 50).await?,
        0,
        "nothing crosses a partition"
    );
    let to_3 = one_way_delays(&net, P1, P3, 10).await?;
    assert_eq!(to_3.len(), 10, "other links are untouched");
    let stats = net
        .link_stats(Link::new(P1, P2))
        .await?
        .expect("a cut link has counters");
    assert!(
        stats.drops >= 50,
        "the blackhole counted its drops: {stats}"
    );
    net.heal(P1, P2).await?;
    assert_eq!(count_delivered(&net, 50).await?, 50);
    assert_eq!(
        net.impairment(Link::new(P1, P2)).await?.rate(),
        Some(Rate::mbit(50)),
        "heal keeps the impairment"
    );
    for _ in 0..20 {
        net.isolate(P2).await?;
        net.rejoin(P2).await?;
    }
    assert_eq!(count_delivered(&net, 20).await?, 20);
    Ok(())
}

#[linkem::test]
async fn a_refused_update_leaves_the_previous_state() -> Result<(), Error> {
    let net = network(3).await?;
    let shaped = LinkImpairment::new().with_rate(Rate::mbit(10));
    net.apply_impairment(Link::new(P1, P3), shaped.clone())
        .await?;
    // Take the class the next link would get (1:3, for peer 2) behind linkem's back.
    let out = net
        .std_command(P1, "tc")?
        .args([
            "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:3", "htb", "rate", "1mbit",
        ])
        .output()
        .expect("tc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = net
        .apply_impairment(Link::new(P1, P2), shaped.clone())
        .await
        .unwrap_err();
    match &err {
        Error::Netlink { errno, op, .. } => {
            assert_eq!(*errno, nix_eexist(), "{err}");
            assert!(
                op.contains("link 1 -> 2") && op.contains("1:3"),
                "the error names the link and object: {err}"
            );
        }
        other => panic!("expected a kernel refusal, got {other:?}"),
    }
    assert_eq!(
        net.impairment(Link::new(P1, P2)).await?,
        LinkImpairment::default()
    );
    assert_eq!(
        net.impairment(Link::new(P1, P3)).await?,
        shaped,
        "the other link is untouched"
    );
    let qdiscs = net
        .std_command(P1, "tc")?
        .args(["qdisc", "show", "dev", "eth0"])
        .output()
        .expect("tc");
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(
        qdiscs.contains("qdisc tbf 8004: parent 1:4"),
        "1 -> 3 keeps its shaper:\n{qdiscs}"
    );
    assert!(
        !qdiscs.contains("8003:"),
        "nothing of the refused link remains:\n{qdiscs}"
    );
    assert_eq!(
        count_delivered(&net, 20).await?,
        20,
        "the network stays usable"
    );
    Ok(())
}

fn nix_eexist() -> nix::errno::Errno {
    nix::errno::Errno::EEXIST
}

#[linkem::test]
async fn bad_input_is_refused_before_the_kernel() -> Result<(), Error> {
    let net = network(2).await?;
    let cases = [
        (Link::new(P1, P1), LinkImpairment::new(), "self"),
        (Link::new(P1, PeerId(9)), LinkImpairment::new(), "unknown"),
        (
            Link::new(P1, P2),
            LinkImpairment {
                loss: 150.0,
                ..Default::default()
            },
            "loss",
        ),
        (
            Link::new(P1, P2),
            LinkImpairment {
                bandwidth_mbit_s: Some(f64::NAN),
                ..Default::default()
            },
            "rate",
        ),
    ];
    for (link, imp, what) in cases {
        let err = net.apply_impairment(link, imp).await.unwrap_err();
        let ok = matches!(
            (&err, what),
            (Error::SelfLink(_), "self")
                | (Error::UnknownPeer(_), "unknown")
                | (Error::InvalidImpairment { .. }, "loss" | "rate")
        );
        assert!(ok, "{what}: {err:?}");
    }
    let qdiscs = net
        .std_command(P1, "tc")?
        .args(["qdisc", "show", "dev", "eth0"])
        .output()
        .expect("tc");
    assert!(
        !String::from_utf8_lossy(&qdiscs.stdout).contains("htb"),
        "no tree was built for refused input"
    );
    Ok(())
}

#[linkem::test(netem)]
async fn jitter_spreads_as_its_distribution() -> Result<(), Error> {
    let net = network(2).await?;
    let base = baseline(&net, P1, P2).await?;
    let jittery = |d| {
        LinkImpairment::new()
            .with_latency(ms(30))
            .with_jitter(ms(6))
            .with_distribution(d)
    };
    // Uniform in 30 ± 6 ms: median 30 ms, interquartile range 6 ms. Robust statistics:
    // a slow kernel's scheduler adds late outliers that would move a mean.
    net.apply_impairment(Link::new(P1, P2), jittery(Distribution::Uniform))
        .await?;
    let uniform = one_way_delays(&net, P1, P2, 300).await?;
    let (median_ms, iqr) = median_iqr(&uniform, base);
    assert!(
        (median_ms - 30.0).abs() < 1.0,
        "uniform median {median_ms:.2} ms"
    );
    assert!(
        (5.0..=7.0).contains(&iqr),
        "uniform IQR {iqr:.2} ms, expected 6"
    );
    // Nothing can arrive before 24 ms.
    let early = uniform.iter().filter(|d| **d < ms(24)).count();
    assert_eq!(early, 0, "uniform samples before 30 - 6 ms");
    // Normal with sd 6 ms: interquartile range 1.349 sd = 8.1 ms.
    net.apply_impairment(Link::new(P1, P2), jittery(Distribution::Normal))
        .await?;
    let normal = one_way_delays(&net, P1, P2, 300).await?;
    let (median_ms, iqr) = median_iqr(&normal, base);
    assert!(
        (median_ms - 30.0).abs() < 1.5,
        "normal median {median_ms:.2} ms"
    );
    assert!(
        (6.8..=9.4).contains(&iqr),
        "normal IQR {iqr:.2} ms, expected 8.1"
    );
    Ok(())
}

/// Median (baseline subtracted) and interquartile range, in ms.
fn median_iqr(samples: &[Duration], base: Duration) -> (f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5) - base.as_secs_f64() * 1e3, at(0.75) - at(0.25))
}

#[linkem::test(netem)]
async fn reordering_sends_its_share_ahead() -> Result<(), Error> {
    let net = network(2).await?;
    // 25% of packets skip the 20 ms delay (netem's reorder), so they overtake others.
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new()
            .with_latency(ms(20))
            .with_reorder(25.0),
    )
    .await?;
    let n = 800;
    let delays = one_way_delays(&net, P1, P2, n).await?;
    assert_eq!(delays.len(), n, "reordering loses nothing");
    let ahead = delays.iter().filter(|d| **d < ms(10)).count();
    let (lo, hi) = interval(n, 0.25);
    assert!(
        (lo..=hi).contains(&(ahead as f64)),
        "{ahead} of {n} undelayed, 99.9% interval {lo:.0}..{hi:.0}"
    );
    Ok(())
}
