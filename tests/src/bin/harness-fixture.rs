//! A test binary for the harness's own tests (tests/tests/harness.rs runs it as a
//! subprocess): bodies that fail, panic, hang and pass. Not part of the suite itself.

use std::time::Duration;

use linkem::{Controller, Peer};

linkem_test::main!();

#[linkem::test(peers = 3, link(1, 2, rate = "20mbit"))]
async fn peer_two_fails(peer: Peer) -> Result<(), String> {
    if peer.id().0 == 2 {
        return Err("replica 2 diverged".into());
    }
    // The others would run long; the failure of peer 2 stops them.
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[linkem::test(peers = 2)]
async fn peer_one_panics(peer: Peer) {
    assert_ne!(peer.id().0, 1, "peer one gives up");
}

#[linkem::test(peers = 2, timeout = "1s")]
async fn hangs_past_its_timeout(_peer: Peer) {
    tokio::time::sleep(Duration::from_secs(60)).await;
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
