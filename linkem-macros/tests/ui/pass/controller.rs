// A controller runs outside the peers while they run their `peer(N, ..)` bodies;
// peers without one run no code.

use linkem::{Controller, Peer};

async fn server(_peer: Peer) {}

async fn client(_peer: Peer) -> Result<(), std::io::Error> {
    Ok(())
}

#[linkem::test(peers = 3, peer(1, server), peer(2, client), link(1, 2, latency = "5ms"))]
async fn partitions_and_heals(_controller: Controller) -> Result<(), String> {
    Ok(())
}

#[linkem::test(peers = 2)]
async fn controller_only(_: linkem::Controller) {}

fn main() {
    let mut defs: Vec<_> = linkem::testing::TESTS.iter().collect();
    defs.sort_by_key(|d| d.name);
    let spec = (defs[1].spec)();
    assert_eq!(defs[1].name, "partitions_and_heals");
    assert!(spec.controller().is_some());
    assert!(spec.body_for(3).is_none());
    assert!((defs[0].spec)().controller().is_some());
}
