// A backend is named by a string, and only the two that exist.
#[linkem::test(peers = 2, backend = "tc")]
async fn misspelled(_peer: linkem::Peer) {}

#[linkem::test(peers = 2, backend = kernel)]
async fn not_a_string(_peer: linkem::Peer) {}

#[linkem::test(backend = "auto")]
async fn auto_is_the_default() {}

fn main() {}
