#[linkem::test(peers = 2, peer_count = 3)]
async fn unknown_test_key(_peer: linkem::Peer) {}

#[linkem::test(peres = 2)]
async fn misspelled_test_key(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1, 2, latncy = "10ms", bandwith = "1mbit"))]
async fn misspelled_link_keys(_peer: linkem::Peer) {}

fn main() {}
