#[linkem::test(peers = 2)]
fn blocking(_peer: linkem::Peer) {}

fn main() {}
