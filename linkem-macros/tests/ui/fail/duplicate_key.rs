#[linkem::test(peers = 2, timeout = "1s", timeout = "2s")]
async fn timeout_twice(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, parallel, serial = true)]
async fn parallel_and_serial(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1, 2, loss = "1%", loss = "2%", rate = "1mbit", bandwidth = "2mbit"))]
async fn link_keys_twice(_peer: linkem::Peer) {}

fn main() {}
