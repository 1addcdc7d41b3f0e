// `peer(N, path)` gives peer N its own body; the others run the annotated function.

use linkem::Peer;

mod roles {
    pub async fn leader(_peer: linkem::Peer) -> Result<(), String> {
        Ok(())
    }
}

async fn witness(_peer: Peer) {}

#[linkem::test(peers = 5, peer(1, roles::leader), peer(5, self::witness))]
async fn follower(_peer: Peer) {}

fn main() {
    let spec = (linkem::testing::TESTS[0].spec)();
    let own: Vec<_> = spec.peer_bodies().map(|(peer, _)| peer.0).collect();
    assert_eq!(own, [1, 5]);
    assert!((1..=5).all(|n| spec.body_for(n).is_some()));
}
