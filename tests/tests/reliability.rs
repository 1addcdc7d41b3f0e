//! Reliability: nothing leaks on any way out (panics, timeouts, half-built networks,
//! IFB devices), many networks and processes at once stay apart, a long run of cycles
//! returns to its starting resources, bad input never reaches the kernel, and a
//! refused kernel update leaves the previous state.
//!
//! Leaks are checked from outside: namespaces by scanning /proc, the host's interfaces,
//! the threads and descriptors of this process. Tests that count this process's threads
//! and descriptors hold [`QUIET`] exclusively, so the `parallel` tests of this file (which
//! hold it shared) cannot disturb the counts.
//!
//! The soak runs `LINKEM_SOAK_CYCLES` cycles (100 by default).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linkem::ip::Subnet;
use linkem::network::{Link, Network, PeerId};
use linkem::tc::impairment::{LinkImpairment, LossModel, Percent, Rate};
use linkem::Error;
use linkem_tests::{
    eventually, fd_count, interfaces, live_netns_inodes, own_netns_inodes, thread_count,
};

use linkem_tests::network;

use linkem_tests::tc;

linkem_test::main!();

const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);
const P3: PeerId = PeerId(3);

/// Held exclusively by tests that count this process's threads and descriptors, shared
/// by the `parallel` tests.
static QUIET: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn subnet() -> Subnet {
    Subnet::new([10, 0, 0, 0].into(), 24)
}

/// Sends `count` copies of `payload` from `from` to `to` over UDP and returns what
/// arrived (the receiver stops after `count` datagrams or three seconds of silence: a
/// first ARP request sent while a fresh bridge port still comes up is retried after a
/// second, and the datagrams wait for it in the neighbour queue).
async fn udp_exchange(
    net: &Network,
    from: PeerId,
    to: PeerId,
    payload: Vec<u8>,
    count: usize,
) -> Result<Vec<Vec<u8>>, Error> {
    let dst = SocketAddr::new(net.addr(to)?, 7800);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let receive = net.run_in_namespace(to, move |_| async move {
        let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
            if got.len() == count {
                break;
            }
        }
        got
    });
    let send = net.run_in_namespace(from, move |_| async move {
        ready_rx.await.unwrap();
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for _ in 0..count {
            socket.send_to(&payload, dst).await.unwrap();
        }
    });
    let (got, sent) = tokio::join!(receive, send);
    sent?;
    got
}

/// The network is usable: datagrams cross between 1 and 2 both ways.
async fn assert_usable(net: &Network) -> Result<(), Error> {
    for (a, b) in [(P1, P2), (P2, P1)] {
        let got = udp_exchange(net, a, b, b"usable".to_vec(), 10).await?;
        assert_eq!(got.len(), 10, "{a} -> {b}: the network stays usable");
    }
    Ok(())
}

/// Polls `f` exactly once and drops it: an operation cancelled after its first step.
/// (A timeout would not do: it polls the operation again before it gives up.) Returns
/// whether the operation finished within that one poll: on a single slow CPU
/// (user-mode-linux) the driver thread can answer every request before the poll looks
/// for the answers, so a test must accept that outcome too.
fn poll_once_and_cancel<F: std::future::Future>(f: F) -> bool {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    f.as_mut().poll(&mut cx).is_ready()
}

/// What this process and the host look like before a test.
struct Before {
    threads: usize,
    fds: usize,
    own_netns: BTreeSet<u64>,
    host_ifaces: BTreeSet<String>,
}

impl Before {
    fn now() -> Before {
        Before {
            threads: thread_count(),
            fds: fd_count(),
            own_netns: own_netns_inodes(),
            host_ifaces: interfaces(),
        }
    }

    /// Everything is back: none of `ours` is referenced anywhere on the machine, this
    /// process references no other namespace than before, threads and descriptors are
    /// back to their counts, the host's interfaces are unchanged.
    async fn assert_back(&self, ours: &[u64], what: &str) {
        let live = live_netns_inodes();
        let left: Vec<_> = ours.iter().filter(|i| live.contains(i)).collect();
        assert!(left.is_empty(), "{what}: namespaces still alive: {left:?}");
        assert!(
            eventually(|| own_netns_inodes() == self.own_netns).await,
            "{what}: this process still references namespaces: {:?} (before {:?})",
            own_netns_inodes(),
            self.own_netns
        );
        // At most as many: a thread that was just ending when `before` was taken (a
        // runtime's worker, seen under nextest) may be gone now; a leak adds one.
        assert!(
            eventually(|| thread_count() <= self.threads).await,
            "{what}: threads {} before, {} after",
            self.threads,
            thread_count()
        );
        assert!(
            eventually(|| fd_count() == self.fds).await,
            "{what}: descriptors {} before, {} after",
            self.fds,
            fd_count()
        );
        assert_eq!(
            interfaces(),
            self.host_ifaces,
            "{what}: the host's interfaces changed"
        );
    }
}

// ---------------------------------------------------------------------------------
// 1. No leaks on any way out
// ---------------------------------------------------------------------------------

#[linkem::test]
async fn a_panicking_peer_leaves_nothing() -> Result<(), Error> {
    let _quiet = QUIET.write().await;
    let before = Before::now();
    let net = network(2).await?;
    let ours = net.namespace_inodes();
    let dst = SocketAddr::new(net.addr(P2)?, 7801);
    let err = net
        .run_in_namespace(P2, move |_| async move {
            // A socket and a spawned task are alive when the body panics.
            let _socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
            tokio::spawn(std::future::pending::<()>());
            panic!("the peer gives up");
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PeerPanicked { peer: P2, message } if message.contains("gives up")),
        "{err:?}"
    );
    assert_usable(&net).await?;
    drop(net);
    before.assert_back(&ours, "after a peer panicked").await;
    Ok(())
}

#[linkem::test]
async fn a_timed_out_peer_is_cancelled_and_leaves_nothing() -> Result<(), Error> {
    let _quiet = QUIET.write().await;
    let before = Before::now();
    let net = network(2).await?;
    let ours = net.namespace_inodes();
    let threads_with_network = thread_count();
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    /// Sets its flag when the peer's body is dropped (cancelled).
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (s, d) = (started.clone(), dropped.clone());
    let dst = SocketAddr::new(net.addr(P1)?, 7802);
    let run = net.run_in_namespace(P1, move |_| async move {
        let _guard = OnDrop(d);
        let _socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        s.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let timed_out = tokio::time::timeout(Duration::from_millis(300), run).await;
    assert!(timed_out.is_err(), "the body sleeps for an hour");
    assert!(started.load(Ordering::SeqCst), "the body had started");
    assert!(
        eventually(|| dropped.load(Ordering::SeqCst)).await,
        "dropping the run's future cancels the peer's body"
    );
    assert!(
        eventually(|| thread_count() == threads_with_network).await,
        "the peer's thread ends with its body: {} threads, {} expected",
        thread_count(),
        threads_with_network
    );
    // The socket of the cancelled body is closed: the port can be bound again.
    let rebound = net
        .run_in_namespace(P1, move |_| async move {
            tokio::net::UdpSocket::bind(dst).await.map(drop).is_ok()
        })
        .await?;
    assert!(rebound, "the cancelled body's socket is closed");
    assert_usable(&net).await?;
    drop(net);
    before.assert_back(&ours, "after a timed-out peer").await;
    Ok(())
}

#[linkem::test]
async fn a_panic_while_building_leaves_nothing() -> Result<(), Error> {
    let _quiet = QUIET.write().await;
    let before = Before::now();

    // On a thread of its own with its own runtime: two peers added, a third add_peer
    // cancelled halfway (its namespace exists, its veth may not), then a panic.
    let (inodes_tx, inodes_rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut net = network(2).await.unwrap();
            inodes_tx.send(net.namespace_inodes()).unwrap();
            // Polled once: the namespace is created synchronously, then it awaits the
            // kernel's answer and is dropped.
            poll_once_and_cancel(net.add_peer());
            panic!("construction fails halfway");
        })
    })
    .join();
    assert!(outcome.is_err(), "the builder thread panicked");
    let ours = inodes_rx.recv().unwrap();
    assert_eq!(ours.len(), 3);
    before
        .assert_back(&ours, "after a panic in a building thread")
        .await;

    // In a task of the test's runtime: the panic unwinds through a half-built network.
    let (inodes_tx, inodes_rx) = std::sync::mpsc::channel();
    let task = tokio::spawn(async move {
        let mut net = Network::new(subnet()).await.unwrap();
        net.add_peer().await.unwrap();
        inodes_tx.send(net.namespace_inodes()).unwrap();
        poll_once_and_cancel(net.add_peer());
        net.add_peer().await.unwrap();
        panic!("construction fails in a task");
    })
    .await;
    assert!(task.unwrap_err().is_panic());
    let ours = inodes_rx.recv().unwrap();
    before
        .assert_back(&ours, "after a panic in a building task")
        .await;
    Ok(())
}

#[linkem::test]
async fn a_cancelled_add_peer_leaves_the_network_usable_and_nothing_behind() -> Result<(), Error> {
    let _quiet = QUIET.write().await;
    let before = Before::now();
    let mut net = network(1).await?;
    let mut finished = 0;
    for _ in 0..5 {
        finished += usize::from(poll_once_and_cancel(net.add_peer()));
    }
    assert!(
        finished < 5,
        "no add_peer was cancelled halfway; the test proves nothing"
    );
    assert_eq!(net.peer_count(), 1 + finished);
    // The next peer still gets the next id and a working link (this failed with EEXIST:
    // the cancelled call's hub port was still there).
    assert_eq!(net.add_peer().await?, PeerId(2 + finished));
    assert_usable(&net).await?;
    let ours = net.namespace_inodes();
    drop(net);
    before
        .assert_back(&ours, "after cancelled add_peer calls")
        .await;
    Ok(())
}

#[linkem::test(netem)]
async fn the_ifb_of_a_duplicating_link_leaves_nothing() -> Result<(), Error> {
    let _quiet = QUIET.write().await;
    let before = Before::now();
    let net = network(3).await?;
    let ours = net.namespace_inodes();
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_duplicate(10.0),
    )
    .await?;
    net.apply_impairment(
        Link::new(P1, P3),
        LinkImpairment::new().with_duplicate(10.0),
    )
    .await?;
    let in_source = net.run_in_namespace(P1, |_| async { interfaces() }).await?;
    assert!(
        in_source.contains("ifb2") && in_source.contains("ifb3"),
        "each duplicating link has its IFB in the source's namespace: {in_source:?}"
    );
    assert_eq!(
        interfaces(),
        before.host_ifaces,
        "no IFB in the host namespace"
    );
    let got = udp_exchange(&net, P1, P2, b"dup".to_vec(), 50).await?;
    assert!(
        got.len() >= 50,
        "duplication delivers at least every datagram"
    );
    drop(net);
    before.assert_back(&ours, "after IFB devices").await;
    Ok(())
}

// ---------------------------------------------------------------------------------
// 2. Concurrency
// ---------------------------------------------------------------------------------

#[linkem::test(parallel, timeout = "120s")]
async fn sixteen_networks_on_one_subnet_at_once_stay_apart() -> Result<(), Error> {
    let _quiet = QUIET.read().await;
    const NETWORKS: usize = 16;
    let barrier = Arc::new(std::sync::Barrier::new(NETWORKS));
    let threads: Vec<_> = (0..NETWORKS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let net = network(2).await?;
                    // Every network exists before any sends: they overlap in time.
                    barrier.wait();
                    net.apply_impairment(
                        Link::new(P1, P2),
                        LinkImpairment::new().with_rate(Rate::mbit(100)),
                    )
                    .await?;
                    let tag = format!("network-{i}").into_bytes();
                    let got = udp_exchange(&net, P1, P2, tag.clone(), 20).await?;
                    let inodes = net.namespace_inodes();
                    // All alive at once until here, so their inodes are distinct.
                    barrier.wait();
                    Ok::<_, Error>((tag, got, inodes))
                })
            })
        })
        .collect();
    let mut all_inodes = BTreeSet::new();
    for (i, thread) in threads.into_iter().enumerate() {
        let (tag, got, inodes) = thread
            .join()
            .unwrap_or_else(|_| panic!("network {i} panicked"))?;
        assert_eq!(got.len(), 20, "network {i}: 20 sent, {} arrived", got.len());
        assert!(
            got.iter().all(|m| *m == tag),
            "network {i} received another network's datagrams: {:?}",
            got.iter()
                .map(|m| String::from_utf8_lossy(m))
                .collect::<Vec<_>>()
        );
        for inode in inodes {
            assert!(all_inodes.insert(inode), "namespace {inode} shared");
        }
    }
    assert_eq!(all_inodes.len(), NETWORKS * 3);
    let live = live_netns_inodes();
    let left: Vec<_> = all_inodes.iter().filter(|i| live.contains(i)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    Ok(())
}

#[linkem::test(parallel, timeout = "120s")]
async fn four_processes_at_once_succeed_and_leave_nothing() -> Result<(), Error> {
    let _quiet = QUIET.read().await;
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_exchange-network"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn exchange-network")
        })
        .collect();
    let mut inodes = BTreeSet::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait for exchange-network");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().any(|l| l == "OK"),
            "process {i} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("inodes "))
            .expect("the inodes line");
        // Not checked for uniqueness: a process that ended freed its namespaces, and
        // the kernel may give their inode numbers to another process's.
        let mine: Vec<u64> = line
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(mine.len(), 3, "process {i}: hub and two peers");
        inodes.extend(mine);
    }
    let live = live_netns_inodes();
    let left: Vec<_> = inodes.iter().filter(|i| live.contains(i)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3. Soak
// ---------------------------------------------------------------------------------

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One cycle: build, impair (shaper only: no netem needed), traffic, change, teardown.
async fn soak_cycle(cycle: usize) -> Result<(), Error> {
    let net = network(2).await?;
    let ours = net.namespace_inodes();
    let link = Link::new(P1, P2);
    net.apply_impairment(link, LinkImpairment::new().with_rate(Rate::mbit(50)))
        .await?;
    let tag = format!("cycle-{cycle}").into_bytes();
    let got = udp_exchange(&net, P1, P2, tag.clone(), 5).await?;
    assert_eq!(got, vec![tag; 5], "cycle {cycle}: traffic");
    let changed = LinkImpairment::new()
        .with_rate(Rate::mbit(20))
        .with_burst(64 * 1024);
    net.apply_impairment(link, changed.clone()).await?;
    assert_eq!(net.impairment(link).await?, changed);
    assert!(net.link_stats(link).await?.is_some());
    drop(net);
    let live = own_netns_inodes();
    assert!(
        ours.iter().all(|i| !live.contains(i)),
        "cycle {cycle}: namespaces left"
    );
    Ok(())
}

#[linkem::test(timeout = "3600s")]
async fn soak_cycles_return_to_their_starting_resources() -> Result<(), Error> {
    let _quiet = QUIET.write().await;
    let cycles: usize = std::env::var("LINKEM_SOAK_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    // One cycle first: what is set up once per process (tokio's blocking pool, the
    // psched values, the netem probe) is not a leak.
    soak_cycle(0).await?;
    let before = Before::now();
    let rss_start = rss_kib();
    let started = Instant::now();
    let mut rss_max = rss_start;
    for cycle in 1..=cycles {
        soak_cycle(cycle).await?;
        rss_max = rss_max.max(rss_kib());
    }
    let took = started.elapsed();
    before.assert_back(&[], "after the soak").await;
    let rss_end = rss_kib();
    println!(
        "soak: {cycles} cycles in {took:.1?} ({:.1} ms/cycle); fds {} -> {}, threads {} -> \
         {}, RSS {rss_start} KiB -> {rss_end} KiB (max {rss_max} KiB)",
        took.as_secs_f64() * 1e3 / cycles.max(1) as f64,
        before.fds,
        fd_count(),
        before.threads,
        thread_count(),
    );
    // Bounded: allocator caches and the like may grow a little, a leak of a network per
    // cycle (several MiB of kernel and user memory) would not stay under this.
    assert!(
        rss_end.saturating_sub(rss_start) < 32 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB over {cycles} cycles"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// 4. Bad input is refused before the kernel
// ---------------------------------------------------------------------------------

/// The traffic-control state of peers 1 and 2, as `tc` shows it.
fn tc_state(net: &Network) -> String {
    let mut out = String::new();
    for peer in [P1, P2] {
        for what in ["qdisc", "class", "filter"] {
            let o = net
                .std_command(peer, "tc")
                .unwrap()
                .args([what, "show", "dev", "eth0"])
                .output()
                .expect("run tc");
            assert!(o.status.success(), "tc {what} show failed");
            out += &format!(
                "peer {peer} {what}:\n{}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
    out
}

fn imp(f: impl FnOnce(&mut LinkImpairment)) -> LinkImpairment {
    let mut imp = LinkImpairment::default();
    f(&mut imp);
    imp
}

/// Every invalid value of every impairment field, with the field the error must name.
fn invalid_impairments() -> Vec<(LinkImpairment, &'static str)> {
    let mut cases = Vec::new();
    let bad_percents = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.001,
        100.001,
        1e9,
    ];
    type Setter = fn(&mut LinkImpairment, f64);
    let percent_fields: [(&str, Setter); 9] = [
        ("loss", |i, v| i.loss = v),
        ("duplicate", |i, v| i.duplicate = v),
        ("corrupt", |i, v| i.corrupt = v),
        ("reorder", |i, v| {
            i.reorder = v;
            i.latency = 1000;
        }),
        ("latency_correlation", |i, v| i.latency_correlation = v),
        ("loss_correlation", |i, v| i.loss_correlation = v),
        ("duplicate_correlation", |i, v| i.duplicate_correlation = v),
        ("corrupt_correlation", |i, v| i.corrupt_correlation = v),
        ("reorder_correlation", |i, v| i.reorder_correlation = v),
    ];
    for (field, set) in percent_fields {
        for v in bad_percents {
            cases.push((imp(|i| set(i, v)), field));
        }
    }
    let ge = |k: usize, v: f64| {
        let mut p = [Percent(1.0), Percent(10.0), Percent(100.0), Percent(0.0)];
        p[k] = Percent(v);
        LossModel::GilbertElliott {
            p: p[0],
            r: p[1],
            bad_loss: p[2],
            good_loss: p[3],
        }
    };
    let four = |k: usize, v: f64| {
        let mut p = [Percent(1.0); 5];
        p[k] = Percent(v);
        LossModel::FourState {
            p13: p[0],
            p31: p[1],
            p32: p[2],
            p23: p[3],
            p14: p[4],
        }
    };
    for v in [f64::NAN, -1.0, 100.5, f64::INFINITY] {
        for (k, field) in [
            "loss_model.p",
            "loss_model.r",
            "loss_model.bad_loss",
            "loss_model.good_loss",
        ]
        .into_iter()
        .enumerate()
        {
            cases.push((LinkImpairment::new().with_loss_model(ge(k, v)), field));
        }
        for (k, field) in [
            "loss_model.p13",
            "loss_model.p31",
            "loss_model.p32",
            "loss_model.p23",
            "loss_model.p14",
        ]
        .into_iter()
        .enumerate()
        {
            cases.push((LinkImpairment::new().with_loss_model(four(k, v)), field));
        }
    }
    cases.extend([
        // Random loss beside a loss model.
        (
            LinkImpairment::new()
                .with_loss(1.0)
                .with_loss_model(ge(0, 1.0)),
            "loss",
        ),
        // Huge durations.
        (imp(|i| i.latency = u32::MAX), "latency"),
        (imp(|i| i.latency = 3_600_000_001), "latency"),
        (LinkImpairment::new().with_latency(Duration::MAX), "latency"),
        (imp(|i| i.jitter = u32::MAX), "jitter"),
        (
            LinkImpairment::new()
                .with_latency(Duration::from_millis(1))
                .with_jitter(Duration::from_secs(3601)),
            "jitter",
        ),
        // Reordering without a delay to reorder against.
        (imp(|i| i.reorder = 10.0), "reorder"),
        (imp(|i| i.gap = 5), "reorder"),
        // Rates: zero, negative, not a number, below 8 bit/s, above the maximum.
        (imp(|i| i.bandwidth_mbit_s = Some(0.0)), "bandwidth_mbit_s"),
        (imp(|i| i.bandwidth_mbit_s = Some(-1.0)), "bandwidth_mbit_s"),
        (
            imp(|i| i.bandwidth_mbit_s = Some(f64::NAN)),
            "bandwidth_mbit_s",
        ),
        (
            imp(|i| i.bandwidth_mbit_s = Some(f64::INFINITY)),
            "bandwidth_mbit_s",
        ),
        (imp(|i| i.bandwidth_mbit_s = Some(1e-7)), "bandwidth_mbit_s"),
        (imp(|i| i.bandwidth_mbit_s = Some(2e12)), "bandwidth_mbit_s"),
        (
            LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(0)),
            "netem_rate",
        ),
        (
            LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(7)),
            "netem_rate",
        ),
        (
            LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(u64::MAX)),
            "netem_rate",
        ),
        // Burst: zero, too large, without a rate.
        (
            imp(|i| {
                i.bandwidth_mbit_s = Some(10.0);
                i.burst_kib = Some(0);
            }),
            "burst_kib",
        ),
        (
            imp(|i| {
                i.bandwidth_mbit_s = Some(10.0);
                i.burst_kib = Some(u32::MAX);
            }),
            "burst_kib",
        ),
        (LinkImpairment::new().with_burst(64 * 1024), "burst_kib"),
        // Queue latency: zero, too long, without a rate.
        (
            LinkImpairment::new()
                .with_rate(Rate::mbit(10))
                .with_queue_latency(Duration::ZERO),
            "queue_latency",
        ),
        (
            LinkImpairment::new()
                .with_rate(Rate::mbit(10))
                .with_queue_latency(Duration::from_secs(3601)),
            "queue_latency",
        ),
        (
            LinkImpairment::new().with_queue_latency(Duration::from_millis(10)),
            "queue_latency",
        ),
        // A queue of no packets.
        (LinkImpairment::new().with_limit(0), "limit"),
    ]);
    cases
}

fn assert_invalid(result: Result<(), Error>, want: &str, case: &str) {
    match result {
        Err(Error::InvalidImpairment { field, value, rule }) => {
            assert_eq!(field, want, "{case}");
            assert!(!value.is_empty() && !rule.is_empty(), "{case}");
        }
        other => panic!("{case}: expected InvalidImpairment of {want}, got {other:?}"),
    }
}

#[linkem::test]
async fn every_invalid_value_is_refused_before_the_kernel() -> Result<(), Error> {
    // Subnets: refused by Network::new before any namespace exists.
    let own = own_netns_inodes();
    let v4 = |a: [u8; 4], len| Subnet::new(a.into(), len);
    let v6 = |a: &str, len| Subnet::new(a.parse().unwrap(), len);
    let bad_subnets = [
        v4([10, 0, 0, 1], 24),
        v4([10, 0, 0, 0], 31),
        v4([10, 0, 0, 0], 32),
        v4([10, 0, 0, 0], 33),
        v4([10, 0, 0, 0], 255),
        v4([127, 0, 0, 0], 8),
        v4([224, 0, 0, 0], 24),
        v4([0, 0, 0, 0], 8),
        v6("fd00::1", 64),
        v6("fd00::", 127),
        v6("fd00::", 129),
        v6("ff02::", 64),
        v6("::", 64),
        v6("::1", 126),
    ];
    for bad in bad_subnets {
        match Network::new(bad).await {
            Err(Error::InvalidSubnet {
                addr, prefix_len, ..
            }) => {
                assert_eq!((addr, prefix_len), (bad.addr(), bad.prefix_len()), "{bad}");
            }
            other => panic!("{bad}: expected InvalidSubnet, got {other:?}"),
        }
        assert!(
            matches!(
                Subnet::try_new(bad.addr(), bad.prefix_len()),
                Err(Error::InvalidSubnet { .. })
            ),
            "{bad}: try_new"
        );
    }
    assert_eq!(
        own_netns_inodes(),
        own,
        "a refused subnet created a namespace"
    );

    // An exhausted subnet: refused before the peer's namespace is created.
    for (subnet, capacity) in [(v4([10, 0, 0, 0], 30), 2), (v6("fd00::", 126), 3)] {
        let mut net = Network::new(subnet).await?;
        for _ in 0..capacity {
            net.add_peer().await?;
        }
        let own = own_netns_inodes();
        match net.add_peer().await {
            Err(Error::SubnetExhausted {
                capacity: c, peer, ..
            }) => {
                assert_eq!(c, capacity as u128, "{subnet}");
                assert_eq!(peer, PeerId(capacity + 1), "{subnet}");
            }
            other => panic!("{subnet}: expected SubnetExhausted, got {other:?}"),
        }
        assert_eq!(
            own_netns_inodes(),
            own,
            "{subnet}: a refused peer made a namespace"
        );
        assert_eq!(net.peer_count(), capacity);
    }

    // Impairments and links, on a network whose link 1 -> 2 already has a tree.
    let net = network(2).await?;
    let shaped = LinkImpairment::new().with_rate(Rate::mbit(10));
    net.apply_impairment(Link::new(P1, P2), shaped.clone())
        .await?;
    let state = tc_state(&net);
    assert!(state.contains("tbf"), "the valid shaper is built:\n{state}");
    let unchanged = |case: &str| {
        let now = tc_state(&net);
        assert_eq!(now, state, "{case}: the kernel's state changed");
    };
    let cases = invalid_impairments();
    assert!(cases.len() > 100, "{} cases", cases.len());
    for (bad, field) in &cases {
        let case = format!("{field} in {bad:?}");
        assert_invalid(
            net.apply_impairment(Link::new(P1, P2), bad.clone()).await,
            field,
            &case,
        );
        assert_invalid(
            net.apply_impairment(Link::new(P2, P1), bad.clone()).await,
            field,
            &case,
        );
        assert_invalid(
            net.apply_impairment_both(P1, P2, bad.clone()).await,
            field,
            &case,
        );
        assert_invalid(net.apply_impairment_all(bad.clone()).await, field, &case);
        assert_invalid(bad.validate(), field, &case);
    }
    unchanged("invalid impairments");
    assert_eq!(net.impairment(Link::new(P1, P2)).await?, shaped);
    assert_eq!(
        net.impairment(Link::new(P2, P1)).await?,
        LinkImpairment::new()
    );
    assert_eq!(net.link_stats(Link::new(P2, P1)).await?, None);

    // Links: a peer to itself, unknown peers (0 and beyond the last).
    let ok = LinkImpairment::new().with_rate(Rate::mbit(1));
    let self_link = Link::new(P1, P1);
    for r in [
        net.apply_impairment(self_link, ok.clone()).await,
        net.apply_impairment_both(P1, P1, ok.clone()).await,
        net.clear_impairment(self_link).await,
        net.partition(P1, P1).await,
        net.partition_one_way(self_link).await,
        net.heal(P1, P1).await,
        net.heal_one_way(self_link).await,
        net.impairment(self_link).await.map(drop),
        net.link_stats(self_link).await.map(drop),
    ] {
        assert!(
            matches!(r, Err(Error::SelfLink(l)) if l == self_link),
            "{r:?}"
        );
    }
    for unknown in [PeerId(0), PeerId(3), PeerId(usize::MAX)] {
        for r in [
            net.apply_impairment(Link::new(P1, unknown), ok.clone())
                .await,
            net.apply_impairment(Link::new(unknown, P1), ok.clone())
                .await,
            net.apply_impairment_both(unknown, P2, ok.clone()).await,
            net.clear_impairment(Link::new(P2, unknown)).await,
            net.partition(P1, unknown).await,
            net.heal(unknown, P1).await,
            net.isolate(unknown).await,
            net.rejoin(unknown).await,
            net.impairment(Link::new(P1, unknown)).await.map(drop),
            net.link_stats(Link::new(unknown, P2)).await.map(drop),
            net.addr(unknown).map(drop),
            net.context(unknown).map(drop),
            net.command(unknown, "true").map(drop),
            net.std_command(unknown, "true").map(drop),
            net.run_in_namespace(unknown, |_| async {}).await,
        ] {
            assert!(
                matches!(r, Err(Error::UnknownPeer(p)) if p == unknown),
                "{unknown}: {r:?}"
            );
        }
    }
    unchanged("invalid links");

    // The network stays usable, the valid shaper included.
    assert_usable(&net).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_rate(Rate::mbit(20)),
    )
    .await?;
    assert_usable(&net).await
}

// ---------------------------------------------------------------------------------
// 5. Kernel refusals
// ---------------------------------------------------------------------------------

/// Takes qdisc handle `handle` on peer 1's eth0 behind linkem's back: a class 1:100 of
/// linkem's root HTB with a pfifo of that handle.
fn occupy_handle(net: &Network, handle: &str) {
    tc(
        net,
        P1,
        "class add dev eth0 parent 1: classid 1:100 htb rate 1mbit",
    );
    tc(
        net,
        P1,
        &format!("qdisc add dev eth0 parent 1:100 handle {handle} pfifo"),
    );
}

fn assert_refused_by_the_kernel(err: &Error, link: &str) {
    match err {
        Error::Netlink { op, message, .. } => {
            // The errno depends on the kernel (EEXIST "Exclusivity flag on, cannot
            // override", or EINVAL "Cannot move an existing qdisc to a different
            // parent" on newer kernels); the refusal and its text are what matter.
            assert!(op.contains(link), "the error names the link: {err}");
            // The kernel explains this refusal (extended ack); linkem passes it on.
            let message = message.as_deref().unwrap_or_default();
            assert!(!message.is_empty(), "the kernel's message is kept: {err:?}");
            println!("refused as expected: {err}");
        }
        other => panic!("expected a kernel refusal, got {other:?}"),
    }
}

#[linkem::test]
async fn a_shaper_refused_mid_plan_leaves_the_previous_state() -> Result<(), Error> {
    let net = network(3).await?;
    let kept = LinkImpairment::new().with_rate(Rate::mbit(30));
    net.apply_impairment(Link::new(P1, P3), kept.clone())
        .await?;
    // The TBF of link 1 -> 2 would be 8003:; take that handle first. The plan creates
    // the class 1:3, then fails on the TBF.
    occupy_handle(&net, "8003:");
    let state = tc(&net, P1, "qdisc show dev eth0") + &tc(&net, P1, "filter show dev eth0");
    let err = net
        .apply_impairment(
            Link::new(P1, P2),
            LinkImpairment::new().with_rate(Rate::mbit(5)),
        )
        .await
        .unwrap_err();
    assert_refused_by_the_kernel(&err, "link 1 -> 2");
    assert_eq!(
        net.impairment(Link::new(P1, P2)).await?,
        LinkImpairment::new()
    );
    assert_eq!(net.impairment(Link::new(P1, P3)).await?, kept);
    assert_eq!(net.link_stats(Link::new(P1, P2)).await?, None);
    let classes = tc(&net, P1, "class show dev eth0");
    assert!(
        !classes.contains("class htb 1:3 "),
        "the class made before the refusal is gone:\n{classes}"
    );
    assert_eq!(
        tc(&net, P1, "qdisc show dev eth0") + &tc(&net, P1, "filter show dev eth0"),
        state,
        "qdiscs and filters are as before"
    );
    assert_usable(&net).await
}

#[linkem::test(netem)]
async fn a_netem_change_refused_mid_plan_leaves_the_previous_state() -> Result<(), Error> {
    let net = network(2).await?;
    let link = Link::new(P1, P2);
    let before = LinkImpairment::new().with_latency(Duration::from_millis(10));
    net.apply_impairment(link, before.clone()).await?;
    occupy_handle(&net, "8003:");
    // The change replaces the netem in place (10 -> 30 ms), then adds the TBF 8003:
    // under it, which the kernel refuses: the netem must be back at 10 ms.
    let err = net
        .apply_impairment(
            link,
            LinkImpairment::new()
                .with_latency(Duration::from_millis(30))
                .with_rate(Rate::mbit(10)),
        )
        .await
        .unwrap_err();
    assert_refused_by_the_kernel(&err, "link 1 -> 2");
    assert_eq!(net.impairment(link).await?, before);
    let qdiscs = tc(&net, P1, "qdisc show dev eth0");
    let netem = qdiscs
        .lines()
        .find(|l| l.starts_with("qdisc netem 3:"))
        .unwrap_or_else(|| panic!("the link's netem is back:\n{qdiscs}"));
    assert!(netem.contains("delay 10ms"), "with its old delay: {netem}");
    assert!(
        !qdiscs.contains("qdisc tbf"),
        "no TBF of the refused change:\n{qdiscs}"
    );
    assert!(net.link_stats(link).await?.is_some());
    // Still usable, and the delay is the old one.
    let started = Instant::now();
    let got = udp_exchange(&net, P1, P2, b"after".to_vec(), 10).await?;
    assert_eq!(got.len(), 10);
    assert!(started.elapsed() >= Duration::from_millis(10));
    // A valid change still goes through once the handle is free.
    tc(&net, P1, "qdisc del dev eth0 parent 1:100 handle 8003:");
    let after = LinkImpairment::new()
        .with_latency(Duration::from_millis(30))
        .with_rate(Rate::mbit(10));
    net.apply_impairment(link, after.clone()).await?;
    assert_eq!(net.impairment(link).await?, after);
    assert_usable(&net).await
}
