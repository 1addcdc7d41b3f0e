//! `#[linkem::test]` end to end: the harness builds the network from the attribute and
//! runs the bodies in their namespaces.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use linkem::{Controller, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

linkem_test::main!();

/// Round-trip times of `n` TCP echoes from this peer to `server`.
async fn echo_rtts(server: SocketAddr, n: usize) -> std::io::Result<Vec<Duration>> {
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut rtts = Vec::with_capacity(n);
    let mut byte = [0u8; 1];
    for _ in 0..n {
        let start = Instant::now();
        stream.write_all(b"x").await?;
        stream.read_exact(&mut byte).await?;
        rtts.push(start.elapsed());
    }
    Ok(rtts)
}

/// Echoes every byte back, for `clients` connections served at the same time.
async fn echo_server(addr: SocketAddr, peer: &Peer, clients: usize) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    peer.signal("listening");
    let mut served = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (mut stream, _) = listener.accept().await?;
        served.spawn(async move {
            stream.set_nodelay(true)?;
            let mut byte = [0u8; 1];
            while stream.read_exact(&mut byte).await.is_ok() {
                stream.write_all(&byte).await?;
            }
            Ok::<(), std::io::Error>(())
        });
    }
    while let Some(done) = served.join_next().await {
        done.expect("echo task")?;
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The seed's scenario: three peers, 100 ms on 1 <-> 2, nothing on the others.
#[linkem::test(peers = 3, link(1, 2, latency = "100ms"), timeout = "60s")]
async fn three_peers_with_100ms_between_1_and_2(peer: Peer) -> std::io::Result<()> {
    let port = 7800;
    match peer.id().0 {
        2 => echo_server(SocketAddr::new(peer.addr(), port), &peer, 2).await,
        1 | 3 => {
            peer.wait_for("listening").await;
            let rtts = echo_rtts(SocketAddr::new(peer.addr_of(2), port), 20).await?;
            let rtt = median(rtts);
            if peer.id().0 == 1 {
                // 100 ms each way, within 2% (+ 2 ms for the stack on a slow kernel).
                let err = rtt.as_secs_f64() - 0.200;
                assert!(
                    err.abs() <= 0.004 + 0.002,
                    "1 <-> 2 median RTT {rtt:?}, configured 200 ms"
                );
            } else {
                assert!(
                    rtt < Duration::from_millis(5),
                    "3 <-> 2 is not impaired: {rtt:?}"
                );
            }
            Ok(())
        }
        n => unreachable!("peer {n}"),
    }
}

/// SPMD: every peer runs the same body and sees its own address and the others'.
#[linkem::test(peers = 4, subnet = "fd00:7::/64")]
async fn every_peer_runs_the_body_in_its_namespace(peer: Peer) {
    assert_eq!(peer.count(), 4);
    assert_eq!(peer.addr(), peer.addr_of(peer.id().0));
    let own = std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap();
    let hex: String = match peer.addr() {
        std::net::IpAddr::V6(a) => a.octets().iter().map(|b| format!("{b:02x}")).collect(),
        _ => unreachable!(),
    };
    assert!(
        own.contains(&hex),
        "peer {} sees its address in its namespace",
        peer.id()
    );
    for (other, addr) in peer.others() {
        assert_ne!(other, peer.id());
        assert_ne!(addr, peer.addr());
    }
    peer.barrier().await;
}

async fn server(peer: Peer) -> std::io::Result<()> {
    echo_server(SocketAddr::new(peer.addr(), 7900), &peer, 1).await
}

async fn client(peer: Peer) -> std::io::Result<()> {
    peer.wait_for("listening").await;
    let rtts = echo_rtts(SocketAddr::new(peer.addr_of(1), 7900), 5).await?;
    assert_eq!(rtts.len(), 5);
    Ok(())
}

/// Per-peer bodies: peer 1 serves, peer 2 calls; peer 3 runs nothing.
#[linkem::test(peers = 3, peer(1, server), peer(2, client))]
async fn each_peer_its_own_body(peer: Peer) {
    assert_eq!(peer.id().0, 3, "only peers without their own body run this");
}

/// Sends a datagram every 10 ms to peer 2 (which echoes it) until the controller has
/// healed the partition and an answer came back after that.
///
/// Driven by the controller's signals, not by time: on a busy machine the controller
/// may run a second late, and a chatter that stopped after a fixed 1.5 s had sent
/// nothing into the partition by then ("the partition dropped packets: sent 0").
async fn chatter(peer: Peer) -> std::io::Result<()> {
    let socket = tokio::net::UdpSocket::bind((peer.addr(), 8000)).await?;
    let to = SocketAddr::new(peer.addr_of(2), 8000);
    let mut buf = [0u8; 8];
    let exchange = async |buf: &mut [u8]| -> std::io::Result<bool> {
        socket.send_to(b"ping", to).await?;
        let answer = tokio::time::timeout(Duration::from_millis(10), socket.recv_from(buf));
        Ok(matches!(answer.await, Ok(Ok(_))))
    };
    while !exchange(&mut buf).await? {}
    peer.signal("chatting");
    let healed = peer.wait_for("healed");
    tokio::pin!(healed);
    loop {
        tokio::select! {
            _ = &mut healed => break,
            sent = exchange(&mut buf) => { sent?; }
        }
    }
    // Answers come back once the partition is healed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !exchange(&mut buf).await? {
        assert!(
            Instant::now() < deadline,
            "no answer within 5 s of the heal"
        );
    }
    peer.signal("answered after the heal");
    Ok(())
}

async fn echo_udp(peer: Peer) -> std::io::Result<()> {
    let socket = tokio::net::UdpSocket::bind((peer.addr(), 8000)).await?;
    let mut buf = [0u8; 8];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], from).await?;
    }
}

/// The controller partitions and heals while the peers talk; the link's counters show
/// the drops the partition caused.
#[linkem::test(peers = 2, peer(1, chatter), peer(2, echo_udp), timeout = "20s")]
async fn controller_partitions_and_heals_mid_test(net: Controller) -> Result<(), linkem::Error> {
    let (a, b) = (net.peer(1), net.peer(2));
    // Peer 1 has had an answer: the link works before the partition.
    net.wait_for("chatting").await;
    net.partition(a, b).await?;
    // Peer 1 keeps sending into the partition; its blackhole counts the drops.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = net
            .link_stats(linkem::Link::new(a, b))
            .await?
            .expect("a cut link has counters");
        if stats.drops > 0 || Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        stats.drops > 0,
        "the partition dropped nothing in 10 s while peer 1 sent: {stats}"
    );
    net.heal(a, b).await?;
    net.signal("healed");
    // Peer 2 echoes forever: the controller's end ends the test once peer 1 is done.
    net.wait_for("answered after the heal").await;
    Ok(())
}

/// The seed `LINKEM_SEED` sets for the run, else `attribute`'s.
fn expected_seed(attribute: u64) -> u64 {
    std::env::var("LINKEM_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(attribute)
}

/// The attribute's `seed` is the network's (through its builder); the network runs on
/// the trial's backend.
#[linkem::test(peers = 2, seed = 42)]
async fn the_seed_key_seeds_the_network_on_the_trials_backend(net: Controller) {
    assert_eq!(net.seed(), expected_seed(42));
    assert_eq!(Some(net.backend()), linkem::testing::trial::backend());
}

/// A pinned test has one trial, on its backend, whatever the run's backends.
#[linkem::test(peers = 1, backend = "userspace")]
async fn a_pinned_test_runs_on_its_backend_only(net: Controller) -> Result<(), String> {
    assert_eq!(net.backend(), linkem::BackendKind::Userspace);
    let own = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("--list")
        .env_remove("LINKEM_BACKEND")
        .output()
        .map_err(|e| e.to_string())?;
    let listed = String::from_utf8_lossy(&own.stdout);
    let name = "a_pinned_test_runs_on_its_backend_only";
    assert!(
        listed.contains(&format!("{name}::userspace: test")),
        "{listed}"
    );
    assert!(!listed.contains(&format!("{name}::kernel")), "{listed}");
    assert!(
        listed.contains("every_peer_runs_the_body_in_its_namespace::kernel: test")
            && listed.contains("every_peer_runs_the_body_in_its_namespace::userspace: test"),
        "an unpinned test has a trial per backend: {listed}"
    );
    Ok(())
}

/// A standalone test's networks, built on its thread, get its backend and its seed.
#[linkem::test(backend = "userspace", seed = 9)]
async fn a_standalone_tests_networks_take_its_backend_and_seed() -> Result<(), linkem::Error> {
    let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
    let net = linkem::Network::new(subnet).await?;
    assert_eq!(net.backend(), linkem::BackendKind::Userspace);
    assert_eq!(net.seed(), expected_seed(9));
    // A builder's own seed wins over the test's (LINKEM_SEED over both).
    let own = linkem::Network::builder(subnet).seed(3).build().await?;
    assert_eq!(own.seed(), expected_seed(3));
    // A network built on another thread is not the trial's: it gets a seed of its own.
    let elsewhere = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move { linkem::Network::new(subnet).await.map(|n| n.seed()) })
    })
    .join()
    .expect("the thread")?;
    if std::env::var_os("LINKEM_SEED").is_none() {
        assert_ne!(elsewhere, 9, "another thread sees no trial");
    }
    Ok(())
}
