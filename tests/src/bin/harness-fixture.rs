//! A test binary for the harness's own tests (tests/tests/harness.rs runs it as a
//! subprocess): bodies that fail, panic, hang and pass. Not part of the suite itself.

use std::time::Duration;

use linkem::{Controller, Peer};

linkem_test::main!();

#[linkem::test(peers = 3, link(1, 2, rate = "20mbit"))]
async fn peer_two_fails(peer: Peer) -> Result<(), String> {
    if peer.id().get() == 2 {
        return Err("replica 2 diverged".into());
    }
    // The others would run long; the failure of peer 2 stops them.
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[linkem::test(peers = 2)]
async fn peer_one_panics(peer: Peer) {
    assert_ne!(peer.id().get(), 1, "peer one gives up");
}

/// Peer 1 waits for a signal nobody sends; peer 2 waits at the barrier for peer 1.
#[linkem::test(peers = 2, timeout = "1s")]
async fn hangs_past_its_timeout(peer: Peer) {
    match peer.id().get() {
        1 => peer.wait_for("listening").await,
        _ => peer.barrier().await,
    }
}

/// A panic the test expects (a task's, seen through its JoinError): a passing test
/// keeps it to itself.
#[linkem::test(peers = 1)]
async fn expected_panic_stays_quiet(_peer: Peer) {
    let joined = tokio::spawn(async { panic!("an expected panic") }).await;
    assert!(joined.is_err_and(|e| e.is_panic()));
}

#[linkem::test(peers = 1, ignore = "the fixture's reason")]
async fn ignored_with_a_reason(_peer: Peer) {}

#[linkem::test(peers = 2)]
async fn controller_names_an_unknown_peer(net: Controller) -> Result<(), linkem::Error> {
    net.addr(net.peer(7))?;
    Ok(())
}

#[linkem::test(peers = 2)]
async fn passes(peer: Peer) {
    assert_eq!(peer.count(), 2);
}

#[linkem::test(peers = 2, link(1, 2, latency = "10ms"))]
async fn needs_netem(_peer: Peer) {}

#[linkem::test(peers = 2)]
async fn controller_fails(_net: Controller) -> Result<(), String> {
    Err("the controller saw a split brain".into())
}

/// How many datagrams `replays_its_losses` sends, one after the other.
const DATAGRAMS: u32 = 200;

/// Peer 1 sends numbered datagrams through a 30 % loss link; peer 2 fails the test
/// with the numbers it did not get: a replay of the printed command must lose the same
/// ones (each link's k-th packet meets the fate its seed gives it).
#[linkem::test(peers = 2, link(1 -> 2, loss = "30%"), timeout = "30s")]
async fn replays_its_losses(peer: Peer) -> Result<(), String> {
    let port = 4000;
    if peer.id().get() == 1 {
        let socket = tokio::net::UdpSocket::bind((peer.addr(), 0))
            .await
            .map_err(|e| e.to_string())?;
        peer.wait_for("bound").await;
        for n in 0..DATAGRAMS {
            socket
                .send_to(&n.to_be_bytes(), (peer.addr_of(2), port))
                .await
                .map_err(|e| e.to_string())?;
            // Paced: the receiver's socket buffer never decides a fate.
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        peer.signal("sent");
        return Ok(());
    }
    let socket = tokio::net::UdpSocket::bind((peer.addr(), port))
        .await
        .map_err(|e| e.to_string())?;
    peer.signal("bound");
    let mut got = std::collections::BTreeSet::new();
    let mut buf = [0u8; 4];
    let sent = peer.wait_for("sent");
    tokio::pin!(sent);
    loop {
        tokio::select! {
            received = socket.recv(&mut buf) => {
                received.map_err(|e| e.to_string())?;
                got.insert(u32::from_be_bytes(buf));
            }
            () = &mut sent => break,
        }
    }
    // What is still on its way (no delay is configured: it is in the socket already).
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
    {
        got.insert(u32::from_be_bytes(buf));
    }
    let lost: Vec<String> = (0..DATAGRAMS)
        .filter(|n| !got.contains(n))
        .map(|n| n.to_string())
        .collect();
    Err(format!("lost datagrams: [{}]", lost.join(",")))
}

/// Builds its own networks on the test's thread, two unseeded and one seeded by its
/// builder, then fails: the report names each network with its backend and seed.
#[linkem::test]
async fn standalone_reports_each_network() -> Result<(), String> {
    let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
    let first = linkem::Network::new(subnet)
        .await
        .map_err(|e| e.to_string())?;
    let second = linkem::Network::new(subnet)
        .await
        .map_err(|e| e.to_string())?;
    let own = linkem::Network::builder(subnet)
        .seed(77)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Err(format!(
        "three networks on the {}, {} and {} backends",
        first.backend(),
        second.backend(),
        own.backend()
    ))
}

/// How many datagrams the capture tests send.
const CAPTURED_DATAGRAMS: u32 = 20;

/// Peer 1 sends numbered datagrams to peer 2's port 4000.
async fn send_datagrams(peer: &Peer) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind((peer.addr(), 0))
        .await
        .map_err(|e| e.to_string())?;
    for n in 0..CAPTURED_DATAGRAMS {
        socket
            .send_to(&n.to_be_bytes(), (peer.addr_of(2), 4000))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Peer 1's datagrams all meet a 100 % loss link, then the test fails: its capture,
/// kept because it failed, shows each of them sent and none delivered. The controller
/// fails only once the link has counted them all (the first wait for ARP, and on a
/// loaded machine that can outlast a test that ends at once).
#[linkem::test(peers = 2, capture = "failed", link(1 -> 2, loss = "100%"), peer(1, send_datagrams_body))]
async fn fails_and_keeps_its_capture(net: Controller) -> Result<(), String> {
    net.wait_for("sent").await;
    let link = linkem::Link::new(net.peer(1), net.peer(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = net
            .network()
            .link_stats(link)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let entered = match stats.fates {
            Some(fates) => fates.sent_packets,
            None => u64::from(stats.packets) + u64::from(stats.drops),
        };
        if entered >= u64::from(CAPTURED_DATAGRAMS) || tokio::time::Instant::now() > deadline {
            return Err(format!(
                "peer 1's datagrams never came ({entered} entered the link)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_datagrams_body(peer: Peer) -> Result<(), String> {
    send_datagrams(&peer).await?;
    peer.signal("sent");
    Ok(())
}

/// The same traffic through an unimpaired link, all received, and the test passes: its
/// capture is removed (unless `LINKEM_CAPTURE_KEEP=always`).
#[linkem::test(peers = 2, capture = "failed")]
async fn a_pass_keeps_no_capture(peer: Peer) -> Result<(), String> {
    if peer.id().get() == 1 {
        peer.wait_for("bound").await;
        return send_datagrams(&peer).await;
    }
    let socket = tokio::net::UdpSocket::bind((peer.addr(), 4000))
        .await
        .map_err(|e| e.to_string())?;
    peer.signal("bound");
    let mut buf = [0u8; 4];
    for _ in 0..CAPTURED_DATAGRAMS {
        socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
