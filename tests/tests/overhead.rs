//! The harness's cost per test: 40 `#[linkem::test(peers = 3)]` tests with empty
//! bodies (a 3-peer network built, three peer threads started and joined, the network
//! torn down). Ignored unless asked for; `scripts/harness-overhead` times this binary
//! against `overhead_plain` (the same number of empty `#[test]`s under libtest).

linkem_test::main!();

macro_rules! empty_three_peer_tests {
    ($($name:ident)*) => {$(
        #[linkem::test(peers = 3, ignore = "measurement: scripts/harness-overhead")]
        async fn $name(_peer: linkem::Peer) {}
    )*};
}

empty_three_peer_tests!(
    e01 e02 e03 e04 e05 e06 e07 e08 e09 e10 e11 e12 e13 e14 e15 e16 e17 e18 e19 e20
    e21 e22 e23 e24 e25 e26 e27 e28 e29 e30 e31 e32 e33 e34 e35 e36 e37 e38 e39 e40
);
