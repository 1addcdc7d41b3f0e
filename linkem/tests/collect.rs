//! `#[linkem::test]` registers every test in `linkem::testing::TESTS`, with the spec
//! its attribute says.
//!
//! A `harness = false` target with its own `main`: under libtest's default harness the
//! attribute adds a failing "needs the linkem harness" guard (that mistake must be
//! loud), and these checks only read the registrations, they run no test.

use std::net::IpAddr;
use std::time::Duration;

use linkem::tc::impairment::{LinkImpairment, LossModel, Percent, Rate};
use linkem::testing::{TestDef, TESTS};
use linkem::{Controller, Peer};

#[linkem::test(peers = 3, link(1, 2, latency = "100ms", loss = "1%"), link(2 -> 3, rate = "10mbit"))]
async fn replicates_under_latency(peer: Peer) {
    let _ = peer.id();
}

async fn leader(_peer: Peer) -> Result<(), String> {
    Ok(())
}

#[linkem::test(
    peers = 2,
    subnet = "fd00::/64",
    timeout = "1.5s",
    seed = 7,
    parallel,
    ignore = "slow",
    all(loss_model = gemodel(p = "1%", r = "10%"), seed = 3),
    peer(2, leader),
)]
async fn with_every_test_key(_peer: Peer) -> Result<(), std::io::Error> {
    Ok(())
}

const CONTROLLED_LINE: u32 = line!() + 1;
#[linkem::test(peers = 4, peer(1, leader), peer(3, leader), link(1 -> 4))]
async fn controlled(_controller: Controller) {}

fn find(name: &str) -> &'static TestDef {
    TESTS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not registered"))
}

fn every_test_is_collected_once() {
    let mut names: Vec<_> = TESTS.iter().map(|t| t.name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "controlled",
            "replicates_under_latency",
            "with_every_test_key"
        ]
    );
    for def in TESTS {
        assert_eq!(def.module_path, "collect");
        assert_eq!(def.path(), def.name);
        assert!(def.file.ends_with("collect.rs"), "{}", def.file);
        assert!(def.line > 0);
    }
}

fn links_and_their_directions() {
    let spec = (find("replicates_under_latency").spec)();
    assert_eq!(spec.peers(), 3);
    let slow = LinkImpairment::new()
        .with_latency(Duration::from_millis(100))
        .with_loss(1.0);
    assert_eq!(spec.link(1, 2), Some(&slow));
    assert_eq!(spec.link(2, 1), Some(&slow));
    assert_eq!(
        spec.link(2, 3),
        Some(&LinkImpairment::new().with_rate(Rate::mbit(10)))
    );
    assert_eq!(spec.link(3, 2), None);
    assert_eq!(spec.links().count(), 3);
    assert!(spec.default_impairment().is_none());
    assert!((1..=3).all(|n| spec.body_for(n).is_some()));
    assert!(spec.controller().is_none());
    assert!(!spec.is_parallel() && !spec.is_ignored());
    assert_eq!(
        (spec.timeout(), spec.seed(), spec.subnet()),
        (None, None, None)
    );
    assert!(spec.validate().is_ok());
}

fn test_keys() {
    let spec = (find("with_every_test_key").spec)();
    assert_eq!(spec.peers(), 2);
    assert_eq!(
        spec.subnet(),
        Some(("fd00::".parse::<IpAddr>().unwrap(), 64))
    );
    assert_eq!(spec.timeout(), Some(Duration::from_millis(1500)));
    assert_eq!(spec.seed(), Some(7));
    assert!(spec.is_parallel());
    assert_eq!(spec.ignore_reason(), Some("slow"));
    let bursty = LinkImpairment::new()
        .with_loss_model(LossModel::GilbertElliott {
            p: Percent(1.0),
            r: Percent(10.0),
            bad_loss: Percent(100.0),
            good_loss: Percent(0.0),
        })
        .with_seed(3);
    assert_eq!(spec.default_impairment(), Some(&bursty));
    assert_eq!(spec.impairment(2, 1), Some(&bursty));
    let own: Vec<_> = spec.peer_bodies().map(|(peer, _)| peer.0).collect();
    assert_eq!(own, [2]);
    assert!(spec.body_for(1).is_some() && spec.default_body().is_some());
}

fn controller_form() {
    let def = find("controlled");
    assert_eq!(def.line, CONTROLLED_LINE, "the line of the attribute");
    let spec = (def.spec)();
    assert!(spec.controller().is_some());
    assert!(spec.default_body().is_none());
    let own: Vec<_> = spec.peer_bodies().map(|(peer, _)| peer.0).collect();
    assert_eq!(own, [1, 3]);
    assert!(spec.body_for(2).is_none() && spec.body_for(4).is_none());
    assert_eq!(spec.link(1, 4), Some(&LinkImpairment::new()));
    assert_eq!(spec.link(4, 1), None);
}

fn main() {
    let checks: [(&str, fn()); 4] = [
        ("every_test_is_collected_once", every_test_is_collected_once),
        ("links_and_their_directions", links_and_their_directions),
        ("test_keys", test_keys),
        ("controller_form", controller_form),
    ];
    for (name, check) in checks {
        check();
        println!("collect: {name} ... ok");
    }
}
