#[linkem::test(peers = 2)]
async fn no_argument() {}

#[linkem::test(peers = 2)]
async fn two_arguments(_peer: linkem::Peer, _other: linkem::Peer) {}

#[linkem::test(peers = 2)]
async fn unknown_argument(_addr: std::net::IpAddr) {}

#[linkem::test(peers = 2)]
async fn borrowed_peer(_peer: &linkem::Peer) {}

#[linkem::test(peers = 2)]
async fn generic<T: Send>(_peer: linkem::Peer) {}

#[linkem::test(peers = 2)]
async unsafe fn not_safe(_peer: linkem::Peer) {}

struct Cluster;

impl Cluster {
    #[linkem::test(peers = 2)]
    async fn method(self) {}
}

fn main() {}
