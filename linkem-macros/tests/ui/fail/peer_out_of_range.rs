async fn body(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, link(0 -> 1), link(1, 4, loss = "1%"), peer(7, body))]
async fn unknown_peers(_peer: linkem::Peer) {}

fn main() {}
