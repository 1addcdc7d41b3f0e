// `crate = "..."` names linkem when it is not `::linkem`.

use linkem as lk;

#[lk::test(crate = "lk", peers = 2, link(1, 2, latency = "1ms"))]
async fn renamed(_peer: lk::Peer) {}

fn main() {
    assert_eq!(lk::testing::TESTS.len(), 1);
}
