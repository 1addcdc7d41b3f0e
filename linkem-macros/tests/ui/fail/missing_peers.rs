#[linkem::test(timeout = "10s")]
async fn no_peers(_peer: linkem::Peer) {}

#[linkem::test]
async fn no_arguments(_peer: linkem::Peer) {}

fn main() {}
