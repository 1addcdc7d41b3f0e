//! linkem's traffic-control encoding, byte for byte against what iproute2's `tc` sends.
//!
//! Each file in `tests/fixtures/tc/` is one request captured from `tc` 6.15 with strace
//! by `scripts/capture-tc-fixtures` (which says how to regenerate them): a header with
//! the command, the netlink message type and flags, then the message body after the
//! 16-byte `nlmsghdr` (whose seq and pid vary), one annotated field a line. The captures
//! ran in a fresh namespace where the device is ifindex 3 and the IFB ifindex 4.
//!
//! Every test builds the same request with linkem's encoders and compares the whole
//! body: `struct tcmsg`, `TCA_KIND` and `TCA_OPTIONS` with everything nested in it.

use std::net::IpAddr;
use std::time::Duration;

use linkem::tc::filter::{self, Family, FilterTarget};
use linkem::tc::htb::{self, HtbClass};
use linkem::tc::impairment::{Distribution, LinkImpairment, LossModel, Percent, Rate};
use linkem::tc::netem;
use linkem::tc::plan::{TcOp, CREATE};
use linkem::tc::psched::Psched;
use linkem::tc::tbf::{self, Tbf, TbfLimit};
use rtnetlink::packet_core::{Emitable, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::tc::{TcHandle, TcMessage};

const DEV: i32 = 3;
const IFB: u32 = 4;

struct Fixture {
    nlmsg_type: u16,
    nlmsg_flags: u16,
    body: Vec<u8>,
    /// (offset in body, comment) of each annotated line.
    comments: Vec<(usize, String)>,
}

fn load(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/tc/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut fixture = Fixture {
        nlmsg_type: 0,
        nlmsg_flags: 0,
        body: vec![],
        comments: vec![],
    };
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# nlmsg_type ") {
            // "RTM_NEWQDISC (36), nlmsg_flags 0x0605 (...)"
            let ty = header.split(['(', ')']).nth(1).unwrap();
            fixture.nlmsg_type = ty.parse().unwrap();
            let flags = header.split("nlmsg_flags 0x").nth(1).unwrap();
            fixture.nlmsg_flags = u16::from_str_radix(&flags[..4], 16).unwrap();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (hex, comment) = line.split_once('#').unwrap_or((line, ""));
        if !comment.is_empty() {
            fixture
                .comments
                .push((fixture.body.len(), comment.trim().to_string()));
        }
        for byte in hex.split_whitespace() {
            fixture.body.push(u8::from_str_radix(byte, 16).unwrap());
        }
    }
    assert!(fixture.nlmsg_type != 0, "{name}: no nlmsg_type header");
    fixture
}

fn emit(msg: &TcMessage) -> Vec<u8> {
    let mut buf = vec![0; msg.buffer_len()];
    msg.emit(&mut buf);
    buf
}

/// Compares a message with a fixture; on a difference, names the fixture's field.
fn check(name: &str, msg: &TcMessage) -> Fixture {
    let fixture = load(name);
    let ours = emit(msg);
    if ours != fixture.body {
        let at = ours
            .iter()
            .zip(&fixture.body)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(fixture.body.len()));
        let field = fixture
            .comments
            .iter()
            .rev()
            .find(|(off, _)| *off <= at)
            .map(|(_, c)| c.as_str())
            .unwrap_or("?");
        let window = |b: &[u8]| {
            b.iter()
                .skip(at.saturating_sub(8))
                .take(24)
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        panic!(
            "{name}: differs from tc at byte {at} (field: {field}); lengths ours {} tc {}\n \
             ours: {}\n   tc: {}",
            ours.len(),
            fixture.body.len(),
            window(&ours),
            window(&fixture.body)
        );
    }
    fixture
}

/// Also checks the netlink type and flags linkem's plan would use.
fn check_op(name: &str, op: TcOp) {
    let fixture = check(name, op.message());
    let ty = match op {
        TcOp::NewQdisc { .. } => 36,
        TcOp::DelQdisc { .. } => 37,
        TcOp::NewClass { .. } => 40,
        TcOp::DelClass { .. } => 41,
        TcOp::NewFilter { .. } => 44,
        TcOp::DelFilter { .. } => 45,
    };
    assert_eq!(ty, fixture.nlmsg_type, "{name}: message type");
    assert_eq!(
        NLM_F_REQUEST | NLM_F_ACK | op.flags(),
        fixture.nlmsg_flags,
        "{name}: flags"
    );
}

fn h(major: u16, minor: u16) -> TcHandle {
    TcHandle { major, minor }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ---- HTB -------------------------------------------------------------------------------

#[test]
fn htb_root() {
    // tc qdisc add dev v0 root handle 1: htb default 1
    let message = htb::qdisc(DEV, h(1, 0), TcHandle::ROOT, 1);
    check_op(
        "htb_root",
        TcOp::NewQdisc {
            message,
            flags: CREATE,
        },
    );
}

#[test]
fn htb_class_10mbit() {
    // tc class add dev v0 parent 1: classid 1:2 htb rate 10mbit
    let c = HtbClass::new(Rate::mbit(10));
    let message = htb::class(DEV, h(1, 2), h(1, 0), &c, &Psched::MODERN);
    check_op(
        "htb_class_10mbit",
        TcOp::NewClass {
            message,
            flags: CREATE,
        },
    );
}

#[test]
fn htb_class_burst() {
    // ... classid 1:3 htb rate 1mbit ceil 10mbit burst 15k cburst 20k prio 3 quantum 1500
    let c = HtbClass {
        ceil: Some(Rate::mbit(10)),
        burst: Some(15 * 1024),
        cburst: Some(20 * 1024),
        quantum: 1500,
        prio: 3,
        ..HtbClass::new(Rate::mbit(1))
    };
    check(
        "htb_class_burst",
        &htb::class(DEV, h(1, 3), h(1, 0), &c, &Psched::MODERN),
    );
}

#[test]
fn htb_class_rate64() {
    // ... classid 1:4 htb rate 40gbit ceil 100gbit
    let c = HtbClass {
        ceil: Some(Rate::gbit(100)),
        ..HtbClass::new(Rate::gbit(40))
    };
    check(
        "htb_class_rate64",
        &htb::class(DEV, h(1, 4), h(1, 0), &c, &Psched::MODERN),
    );
}

#[test]
fn htb_class_unlimited() {
    // ... classid 1:1 htb rate 1tbit burst 125000000 cburst 125000000 quantum 65536
    let message = htb::class(
        DEV,
        h(1, 1),
        h(1, 0),
        &HtbClass::unlimited(),
        &Psched::MODERN,
    );
    check_op(
        "htb_class_unlimited",
        TcOp::NewClass {
            message,
            flags: CREATE,
        },
    );
}

// ---- TBF -------------------------------------------------------------------------------

fn tbf_check(name: &str, tbf: Tbf) {
    let message = tbf::qdisc(DEV, h(0x8002, 0), h(2, 1), &tbf, &Psched::MODERN);
    check_op(
        name,
        TcOp::NewQdisc {
            message,
            flags: CREATE,
        },
    );
}

#[test]
fn tbf_limit() {
    // tc qdisc add dev v0 parent 2:1 handle 8002: tbf rate 10mbit burst 32k limit 100k
    tbf_check(
        "tbf_limit",
        Tbf {
            rate: Rate::mbit(10),
            burst: 32 * 1024,
            limit: TbfLimit::Bytes(100 * 1024),
        },
    );
}

#[test]
fn tbf_latency() {
    // ... tbf rate 10mbit burst 32k latency 50ms
    tbf_check(
        "tbf_latency",
        Tbf {
            rate: Rate::mbit(10),
            burst: 32 * 1024,
            limit: TbfLimit::Latency(ms(50)),
        },
    );
}

#[test]
fn tbf_rate64() {
    // ... tbf rate 50gbit burst 1m latency 10ms
    tbf_check(
        "tbf_rate64",
        Tbf {
            rate: Rate::gbit(50),
            burst: 1024 * 1024,
            limit: TbfLimit::Latency(ms(10)),
        },
    );
}

#[test]
fn tbf_from_impairment_matches_tc() {
    // The impairment's fields produce the same request.
    let imp = LinkImpairment::new()
        .with_rate(Rate::mbit(10))
        .with_burst(32 * 1024)
        .with_queue_latency(ms(50));
    tbf_check("tbf_latency", Tbf::from_impairment(&imp).unwrap());
}

// ---- netem -----------------------------------------------------------------------------

fn netem_check(name: &str, imp: LinkImpairment, limit: u32) {
    imp.validate().unwrap();
    let message = netem::qdisc(DEV, h(2, 0), h(1, 2), &imp, limit);
    check_op(
        name,
        TcOp::NewQdisc {
            message,
            flags: CREATE,
        },
    );
}

#[test]
fn netem_delay() {
    // tc qdisc add dev v0 parent 1:2 handle 2: netem delay 100ms
    netem_check(
        "netem_delay",
        LinkImpairment::new().with_latency(ms(100)),
        1000,
    );
}

#[test]
fn netem_normal() {
    // ... netem limit 5000 delay 10ms 2ms 25% distribution normal seed 42
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_jitter(ms(2))
        .with_latency_correlation(25.0)
        .with_distribution(Distribution::Normal)
        .with_seed(42);
    netem_check("netem_normal", imp, 5000);
}

#[test]
fn netem_pareto() {
    // ... netem delay 50ms 10ms distribution pareto
    let imp = LinkImpairment::new()
        .with_latency(ms(50))
        .with_jitter(ms(10))
        .with_distribution(Distribution::Pareto);
    netem_check("netem_pareto", imp, 1000);
}

#[test]
fn netem_paretonormal() {
    // ... netem delay 50ms 10ms 5% distribution paretonormal
    let imp = LinkImpairment::new()
        .with_latency(ms(50))
        .with_jitter(ms(10))
        .with_latency_correlation(5.0)
        .with_distribution(Distribution::ParetoNormal);
    netem_check("netem_paretonormal", imp, 1000);
}

#[test]
fn netem_uniform_jitter() {
    // ... netem delay 10ms 3ms 10%
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_jitter(ms(3))
        .with_latency_correlation(10.0);
    netem_check("netem_uniform_jitter", imp, 1000);
}

#[test]
fn netem_loss_random() {
    // ... netem loss random 1.5% 30%
    let imp = LinkImpairment::new()
        .with_loss(1.5)
        .with_loss_correlation(30.0);
    netem_check("netem_loss_random", imp, 1000);
}

#[test]
fn netem_loss_gemodel() {
    // ... netem loss gemodel 1% 10% 70% 0.1%
    let imp = LinkImpairment::new().with_loss_model(LossModel::GilbertElliott {
        p: Percent(1.0),
        r: Percent(10.0),
        bad_loss: Percent(70.0),
        good_loss: Percent(0.1),
    });
    netem_check("netem_loss_gemodel", imp, 1000);
}

#[test]
fn netem_loss_state() {
    // ... netem loss state 1% 20% 30% 40% 0.5%   (p13 p31 p32 p23 p14)
    let imp = LinkImpairment::new().with_loss_model(LossModel::FourState {
        p13: Percent(1.0),
        p31: Percent(20.0),
        p32: Percent(30.0),
        p23: Percent(40.0),
        p14: Percent(0.5),
    });
    netem_check("netem_loss_state", imp, 1000);
}

#[test]
fn netem_duplicate() {
    // ... netem delay 1ms 1ms 5% duplicate 5% 20%
    let imp = LinkImpairment::new()
        .with_latency(ms(1))
        .with_jitter(ms(1))
        .with_latency_correlation(5.0)
        .with_duplicate(5.0)
        .with_duplicate_correlation(20.0);
    netem_check("netem_duplicate", imp, 1000);
}

#[test]
fn netem_corrupt() {
    // ... netem corrupt 0.1% 10%
    let imp = LinkImpairment::new()
        .with_corrupt(0.1)
        .with_corrupt_correlation(10.0);
    netem_check("netem_corrupt", imp, 1000);
}

#[test]
fn netem_reorder() {
    // ... netem delay 10ms reorder 25% 50% gap 5
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_reorder(25.0)
        .with_reorder_correlation(50.0)
        .with_gap(5);
    netem_check("netem_reorder", imp, 1000);
}

#[test]
fn netem_reorder_nogap() {
    // ... netem delay 10ms reorder 25%
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_reorder(25.0);
    netem_check("netem_reorder_nogap", imp, 1000);
}

#[test]
fn netem_rate() {
    // ... netem rate 100mbit
    netem_check(
        "netem_rate",
        LinkImpairment::new().with_netem_rate(Rate::mbit(100)),
        1000,
    );
}

#[test]
fn netem_rate64() {
    // ... netem rate 50gbit
    netem_check(
        "netem_rate64",
        LinkImpairment::new().with_netem_rate(Rate::gbit(50)),
        1000,
    );
}

#[test]
fn netem_all() {
    // ... netem limit 2000 delay 20ms 5ms 10% distribution normal loss random 1.5% 30%
    //     duplicate 5% 20% corrupt 0.1% 10% reorder 25% 50% gap 5 rate 100mbit seed 7
    let imp = LinkImpairment::new()
        .with_latency(ms(20))
        .with_jitter(ms(5))
        .with_latency_correlation(10.0)
        .with_distribution(Distribution::Normal)
        .with_loss(1.5)
        .with_loss_correlation(30.0)
        .with_duplicate(5.0)
        .with_duplicate_correlation(20.0)
        .with_corrupt(0.1)
        .with_corrupt_correlation(10.0)
        .with_reorder(25.0)
        .with_reorder_correlation(50.0)
        .with_gap(5)
        .with_netem_rate(Rate::mbit(100))
        .with_seed(7);
    netem_check("netem_all", imp, 2000);
}

// ---- u32 and mirred --------------------------------------------------------------------

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn u32_hash_tables() {
    // tc filter add dev v0 parent 1: protocol ip prio 1 handle 4: u32 divisor 256
    let message = filter::hash_table(DEV, h(1, 0), Family::V4);
    check_op(
        "u32_ht_ip",
        TcOp::NewFilter {
            message,
            flags: CREATE,
        },
    );
    // ... protocol ipv6 prio 3 handle 6: u32 divisor 256
    check("u32_ht_ip6", &filter::hash_table(DEV, h(1, 0), Family::V6));
}

#[test]
fn u32_hash_links() {
    // ... protocol ip prio 1 handle ::1 u32 match u32 0 0 at 16
    //     hashkey mask 0x000000ff at 16 link 4:
    check("u32_link_ip", &filter::hash_link(DEV, h(1, 0), Family::V4));
    // ... protocol ipv6 prio 3 handle ::1 u32 match u32 0 0 at 36
    //     hashkey mask 0x000000ff at 36 link 6:
    check("u32_link_ip6", &filter::hash_link(DEV, h(1, 0), Family::V6));
}

#[test]
fn u32_dst_ip() {
    // ... protocol ip prio 1 handle 4:5:1 u32 ht 4:5: match ip dst 10.0.0.5/32 flowid 1:6
    let message = filter::dst_filter(DEV, h(1, 0), addr("10.0.0.5"), FilterTarget::Class(h(1, 6)));
    check_op(
        "u32_dst_ip",
        TcOp::NewFilter {
            message,
            flags: CREATE,
        },
    );
}

#[test]
fn u32_dst_ip6() {
    // ... protocol ipv6 prio 3 handle 6:5:1 u32 ht 6:5: match ip6 dst fd00::5/128 flowid 1:6
    check(
        "u32_dst_ip6",
        &filter::dst_filter(DEV, h(1, 0), addr("fd00::5"), FilterTarget::Class(h(1, 6))),
    );
}

#[test]
fn u32_neighbour_discovery() {
    // ... protocol ipv6 prio 2 handle ::1 u32 match ip6 protocol 58 0xff
    //     match u8 135 0xff at 40 flowid 1:1 (and ::2 for 136)
    let message = filter::nd_filter(DEV, h(1, 0), filter::ND_TYPES[0], h(1, 1));
    check_op(
        "u32_nd_ns",
        TcOp::NewFilter {
            message,
            flags: CREATE,
        },
    );
    check(
        "u32_nd_na",
        &filter::nd_filter(DEV, h(1, 0), filter::ND_TYPES[1], h(1, 1)),
    );
}

#[test]
fn u32_mirred_ip() {
    // ... handle 4:7:1 u32 ht 4:7: match ip dst 10.0.0.7/32
    //     action mirred egress redirect dev ifb0
    check(
        "u32_mirred_ip",
        &filter::dst_filter(
            DEV,
            h(1, 0),
            addr("10.0.0.7"),
            FilterTarget::Redirect { ifindex: IFB },
        ),
    );
}

#[test]
fn u32_del_ip() {
    // tc filter del dev v0 parent 1: protocol ip prio 1 handle 4:5:1 u32
    let message = filter::delete_dst_filter(DEV, h(1, 0), addr("10.0.0.5"));
    check_op("u32_del_ip", TcOp::DelFilter { message });
}

/// The fixtures parse back with netlink-packet-route (what the kernel echoes or dumps
/// is read with the same types). u32 options are typed and round-trip; for kinds the
/// crate does not know (netem, htb, tbf) it keeps the whole `TCA_OPTIONS` payload as one
/// `TcOption::Other` whose kind is 2 again, so emitting the parsed message would wrap
/// the payload in a second `TCA_OPTIONS` header: never re-emit a parsed qdisc.
#[test]
fn fixtures_parse_as_tc_messages() {
    use rtnetlink::packet_core::{Nla, Parseable};
    use rtnetlink::packet_route::tc::{TcAttribute, TcOption};
    for name in [
        "u32_dst_ip",
        "u32_dst_ip6",
        "u32_mirred_ip",
        "u32_link_ip",
        "u32_nd_ns",
    ] {
        let body = load(name).body;
        let msg = TcMessage::parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(emit(&msg), body, "{name}: parse + emit round trip");
    }
    for name in ["netem_all", "htb_class_rate64", "tbf_rate64"] {
        let body = load(name).body;
        let msg = TcMessage::parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(TcAttribute::Options(options)) = msg.attributes.get(1) else {
            panic!("{name}: no options in {msg:?}");
        };
        let [TcOption::Other(raw)] = options.as_slice() else {
            panic!("{name}: options parsed as {options:?}");
        };
        assert_eq!(raw.kind(), 2, "{name}");
        let mut payload = vec![0; raw.value_len()];
        raw.emit_value(&mut payload);
        let ours = emit(&msg);
        assert_eq!(ours.len(), body.len() + 4, "{name}: the known extra header");
        assert_eq!(
            &body[body.len() - payload.len()..],
            payload.as_slice(),
            "{name}"
        );
    }
}
