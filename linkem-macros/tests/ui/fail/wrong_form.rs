#[linkem::test(peers)]
async fn peers_without_value(_peer: linkem::Peer) {}

#[linkem::test(peers(3))]
async fn peers_as_list(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link = "1-2")]
async fn link_as_value(_peer: linkem::Peer) {}

#[linkem::test(peers = "2", timeout = 30, crate = linkem)]
async fn wrong_literals(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1 - 2))]
async fn bad_link_syntax(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, peer(1))]
async fn bad_peer_syntax(_peer: linkem::Peer) {}

fn main() {}
