// One body, run on every peer; `()` and `Result` returns; any path ending in `Peer`.

use linkem::Peer;

#[linkem::test(peers = 3, link(1, 2, latency = "100ms", loss = "1%"), link(2 -> 3, rate = "10mbit"))]
async fn replicates_under_latency(peer: linkem::Peer) {
    let _ = peer.id();
}

#[linkem::test(peers = 1)]
async fn returns_a_result(_peer: Peer) -> Result<(), std::io::Error> {
    Ok(())
}

#[linkem::test(peers = 1)]
async fn returns_a_boxed_error(_: ::linkem::Peer) -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

// A peer body runs on its peer's thread: its future need not be `Send`.
#[linkem::test(peers = 2)]
async fn holds_an_rc_across_await(_peer: Peer) {
    let shared = std::rc::Rc::new(std::cell::Cell::new(1));
    std::future::ready(()).await;
    shared.set(2);
}

fn main() {
    let names: Vec<_> = linkem::testing::TESTS.iter().map(|t| t.name).collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
