// A test without a Peer or Controller builds its own networks: keys that describe the
// harness-built network are refused, each at its own token.
#[linkem::test(link(1, 2, latency = "1ms"), all(loss = "1%"), timeout = "5s")]
async fn builds_its_own() {}

fn main() {}
