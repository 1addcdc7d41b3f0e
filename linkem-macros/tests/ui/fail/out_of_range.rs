#[linkem::test(peers = 0)]
async fn no_peer(_peer: linkem::Peer) {}

#[linkem::test(peers = 300)]
async fn too_many_peers(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, seed = -1, all(latency = "2h", limit = 0, gap = 5000000000, rate = "1mbit", burst = 0))]
async fn values(_peer: linkem::Peer) {}

fn main() {}
