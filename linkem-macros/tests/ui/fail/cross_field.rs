#[linkem::test(peers = 2, all(reorder = "10%", burst = "32kb", queue_latency = "10ms"))]
async fn needs_latency_and_rate(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, all(loss = "1%", loss_model = gemodel(p = "1%", r = "10%")))]
async fn two_loss_generators(_peer: linkem::Peer) {}

fn main() {}
