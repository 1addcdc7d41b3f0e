#[linkem::test(peers = 2, timeout = "30", link(1, 2, latency = "10xs", jitter = "2m", queue_latency = 50))]
async fn durations(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, timeout = "0s", all(latency = "1500ns", jitter = "1.5.0ms"))]
async fn more_durations(_peer: linkem::Peer) {}

fn main() {}
