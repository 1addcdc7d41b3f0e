#[linkem::test(peers = 2)]
struct Cluster;

fn main() {}
