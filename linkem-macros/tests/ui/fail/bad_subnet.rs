#[linkem::test(peers = 3, subnet = "10.0.0.0/30")]
async fn too_small(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, subnet = "10.0.0.1/24")]
async fn host_bits(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, subnet = "10.0.0.0")]
async fn no_prefix(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, subnet = "fd00::/127")]
async fn ipv6_too_small(_peer: linkem::Peer) {}

#[linkem::test(peers = 3, subnet = "10.0.300.0/24")]
async fn not_an_address(_peer: linkem::Peer) {}

fn main() {}
