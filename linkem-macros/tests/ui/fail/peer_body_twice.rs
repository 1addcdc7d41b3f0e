async fn a(_peer: linkem::Peer) {}
async fn b(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, peer(1, a), peer(1, b))]
async fn two_bodies(_peer: linkem::Peer) {}

fn main() {}
