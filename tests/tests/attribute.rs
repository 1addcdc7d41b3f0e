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

async fn chatter(peer: Peer) -> std::io::Result<()> {
    // Datagrams every 10 ms for 1.5 s to peer 2; counts what comes back per phase.
    let socket = tokio::net::UdpSocket::bind((peer.addr(), 8000)).await?;
    let to = SocketAddr::new(peer.addr_of(2), 8000);
    peer.signal("chatting");
    let mut got = 0usize;
    let mut buf = [0u8; 8];
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        socket.send_to(b"ping", to).await?;
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(10), socket.recv_from(&mut buf)).await
        {
            got += 1;
        }
    }
    assert!(got > 0, "answers came back outside the partition");
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
    net.wait_for("chatting").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.partition(a, b).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = net
        .link_stats(linkem::Link::new(a, b))
        .await?
        .expect("a cut link has counters");
    assert!(stats.drops > 0, "the partition dropped packets: {stats}");
    net.heal(a, b).await?;
    // Peer 2 echoes forever: the controller's end ends the test once peer 1 is done.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    Ok(())
}
