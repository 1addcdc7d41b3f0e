#[linkem::test(peers = 3, link(1, 2, latency = "10ms"), link(1 -> 2, loss = "1%"))]
async fn both_then_one(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, link(2 -> 3), link(3, 2))]
async fn one_then_both(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, link(1, 3), link(3, 1))]
async fn both_twice(_peer: linkem::Peer) {}

fn main() {}
