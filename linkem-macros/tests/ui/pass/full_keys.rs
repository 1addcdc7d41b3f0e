// Every key of the attribute, and every key of a link.

use std::time::Duration;

use linkem::tc::impairment::{Distribution, LinkImpairment, LossModel, Percent, Rate};
use linkem::Peer;

async fn first(_peer: Peer) {}

#[linkem::test(
    peers = 4,
    subnet = "10.1.0.0/16",
    timeout = "2min",
    seed = 42,
    capture = "failed",
    backend = "userspace",
    parallel,
    ignore = "needs a 5.17 kernel for netem seeds",
    all(latency = "10ms", loss = 0.5),
    link(
        1, 2,
        latency = "100ms",
        jitter = "10ms",
        distribution = "normal",
        latency_correlation = "25%",
        loss_correlation = "5%",
        loss_model = gemodel(p = "1%", r = "10%", bad_loss = "90%", good_loss = "0.1%"),
        duplicate = "0.5%",
        duplicate_correlation = "1%",
        corrupt = "0.1%",
        corrupt_correlation = "2%",
        reorder = "25%",
        reorder_correlation = "50%",
        gap = 5,
        rate = "1.5mbit",
        burst = "32kb",
        queue_latency = "50ms",
        limit = 1000,
        netem_rate = "100mbit",
        seed = 7,
    ),
    link(3 -> 4, bandwidth = "1gbit", burst = 65536, loss_model = state(p13 = "1%", p31 = "90%", p14 = 0.1)),
    link(4 -> 3),
    peer(1, first),
)]
async fn every_key(_peer: Peer) {}

#[linkem::test(peers = 2, serial = false, ignore, subnet = "fd00:1::/120")]
async fn other_forms(_peer: Peer) {}

fn main() {
    let mut defs: Vec<_> = linkem::testing::TESTS.iter().collect();
    defs.sort_by_key(|d| d.name);
    let spec = (defs[0].spec)();
    assert_eq!(spec.peers(), 4);
    assert_eq!(spec.subnet(), Some(("10.1.0.0".parse().unwrap(), 16)));
    assert_eq!(spec.timeout(), Some(Duration::from_secs(120)));
    assert_eq!(spec.seed(), Some(42));
    assert_eq!(spec.backend(), Some(linkem::BackendKind::Userspace));
    assert_eq!(spec.capture(), Some(linkem::capture::CaptureKeep::Failed));
    assert!(spec.capture_dir().ends_with("linkem-captures"));
    assert!(spec.is_parallel());
    assert_eq!(spec.ignore_reason(), Some("needs a 5.17 kernel for netem seeds"));
    let all = LinkImpairment::new()
        .with_latency(Duration::from_millis(10))
        .with_loss(0.5);
    assert_eq!(spec.default_impairment(), Some(&all));
    let one_two = LinkImpairment::new()
        .with_latency(Duration::from_millis(100))
        .with_jitter(Duration::from_millis(10))
        .with_distribution(Distribution::Normal)
        .with_latency_correlation(25.0)
        .with_loss_correlation(5.0)
        .with_loss_model(LossModel::GilbertElliott {
            p: Percent(1.0),
            r: Percent(10.0),
            bad_loss: Percent(90.0),
            good_loss: Percent(0.1),
        })
        .with_duplicate(0.5)
        .with_duplicate_correlation(1.0)
        .with_corrupt(0.1)
        .with_corrupt_correlation(2.0)
        .with_reorder(25.0)
        .with_reorder_correlation(50.0)
        .with_gap(5)
        .with_rate(Rate::kbit(1500))
        .with_burst(32 * 1024)
        .with_queue_latency(Duration::from_millis(50))
        .with_limit(1000)
        .with_netem_rate(Rate::mbit(100))
        .with_seed(7);
    assert_eq!(spec.link(1, 2), Some(&one_two));
    assert_eq!(spec.link(2, 1), Some(&one_two));
    assert!(one_two.validate().is_ok());
    let three_four = spec.link(3, 4).unwrap();
    assert_eq!(three_four.rate(), Some(Rate::gbit(1)));
    assert_eq!(three_four.burst_kib, Some(64));
    assert_eq!(
        three_four.loss_model,
        Some(LossModel::FourState {
            p13: Percent(1.0),
            p31: Percent(90.0),
            p32: Percent(0.0),
            p23: Percent(0.0),
            p14: Percent(0.1),
        })
    );
    assert_eq!(spec.link(4, 3), Some(&LinkImpairment::new()));
    assert_eq!(spec.impairment(3, 1), Some(&all));
    assert!(spec.validate().is_ok());

    let spec = (defs[1].spec)();
    assert!(spec.is_parallel() && spec.is_ignored() && spec.ignore_reason().is_none());
    assert_eq!(spec.backend(), None, "without the key: every backend");
    assert_eq!(spec.capture(), None, "without the key: no capture");
    assert_eq!(spec.subnet(), Some(("fd00:1::".parse().unwrap(), 120)));
}
