#[linkem::test(peers = 2, all(loss = "150%", duplicate = -1.0, corrupt = "1", reorder_correlation = "NaN%", loss_correlation = 100.5))]
async fn percents(_peer: linkem::Peer) {}

fn main() {}
