#[linkem::test(peers = 3, link(2, 2, latency = "1ms"), link(3 -> 3))]
async fn loops(_peer: linkem::Peer) {}

fn main() {}
