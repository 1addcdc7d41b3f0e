#[linkem::test(peers = 2)]
async fn returns_a_number(_peer: linkem::Peer) -> u32 {
    7
}

async fn body(_peer: linkem::Peer) -> Option<()> {
    None
}

#[linkem::test(peers = 2, peer(1, body))]
async fn peer_body_returns_an_option(_peer: linkem::Peer) {}

fn main() {}
