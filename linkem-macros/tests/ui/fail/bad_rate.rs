#[linkem::test(peers = 2, link(1, 2, rate = "10kbps"), link(1 -> 2, netem_rate = "10"))]
async fn rates(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, all(rate = "0mbit", netem_rate = "10mb", burst = "32kbit"))]
async fn more_rates(_peer: linkem::Peer) {}

fn main() {}
