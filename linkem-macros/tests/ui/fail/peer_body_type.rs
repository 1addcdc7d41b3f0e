async fn controls(_controller: linkem::Controller) {}

#[linkem::test(peers = 2, peer(1, controls), peer(2, missing))]
async fn wrong_bodies(_peer: linkem::Peer) {}

fn main() {}
