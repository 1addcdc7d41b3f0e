#[linkem::test(peers = 2, link(1, 2, loss_model = gemodel(p = "1%")))]
async fn missing_parameter(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1, 2, loss_model = markov(p = "1%")))]
async fn unknown_model(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1, 2, loss_model = state(p13 = "1%", p31 = "200%", p41 = "1%")))]
async fn bad_parameters(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1, 2, loss_model = "gemodel"))]
async fn not_a_model(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, link(1, 2, distribution = "gaussian"))]
async fn unknown_distribution(_peer: linkem::Peer) {}

fn main() {}
