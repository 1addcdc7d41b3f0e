//! Property tests of the traffic-control encoding: every message linkem builds survives
//! emit -> parse with netlink-packet-route's parsers, its fields intact (netem's flat
//! options decoded with `nla::iter`), and `LinkImpairment::validate` never panics and
//! accepts exactly what its rules say, for random inputs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use linkem::tc::filter::{self, Family, FilterTarget};
use linkem::tc::htb::{self, HtbClass};
use linkem::tc::impairment::{
    Distribution, LinkImpairment, LossModel, Percent, Rate, MAX_DELAY, MAX_RATE,
};
use linkem::tc::psched::{needs_rate64, rate32, Psched};
use linkem::tc::tbf::{self, Tbf};
use linkem::tc::{netem, nla};
use proptest::prelude::*;
use rtnetlink::packet_core::{Emitable, Nla, Parseable};
use rtnetlink::packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcAttribute,
    TcFilterU32Option, TcHandle, TcMessage, TcOption, TcU32SelectorFlags,
};

const CASES: u32 = 64;

/// Emits `msg` and parses it back with netlink-packet-route.
fn round_trip(msg: &TcMessage) -> TcMessage {
    let mut bytes = vec![0; msg.buffer_len()];
    msg.emit(&mut bytes);
    TcMessage::parse(&bytes[..]).expect("netlink-packet-route parses what linkem emits")
}

/// The kind and the raw `TCA_OPTIONS` payload of a parsed qdisc or class.
fn kind_and_options(msg: &TcMessage) -> (String, Vec<u8>) {
    let kind = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Kind(k) => Some(k.clone()),
            _ => None,
        })
        .expect("a kind");
    let options = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Options(o) => match o.as_slice() {
                [TcOption::Other(nla)] => {
                    assert_eq!(nla.kind(), nla::TCA_OPTIONS);
                    let mut value = vec![0; nla.value_len()];
                    nla.emit_value(&mut value);
                    Some(value)
                }
                other => panic!("options parsed as {other:?}"),
            },
            _ => None,
        })
        .expect("options");
    (kind, options)
}

fn attrs(payload: &[u8]) -> BTreeMap<u16, Vec<u8>> {
    let mut map = BTreeMap::new();
    for (k, v) in nla::iter(payload) {
        assert!(map.insert(k, v.to_vec()).is_none(), "attribute {k} twice");
    }
    map
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

fn handle() -> impl Strategy<Value = TcHandle> {
    (any::<u16>(), any::<u16>()).prop_map(|(major, minor)| TcHandle { major, minor })
}

fn percent() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(100.0), 0.0..=100.0f64]
}

fn loss_model() -> impl Strategy<Value = Option<LossModel>> {
    let p = || percent().prop_map(Percent);
    prop_oneof![
        Just(None),
        (p(), p(), p(), p()).prop_map(|(p, r, bad_loss, good_loss)| Some(
            LossModel::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss
            }
        )),
        (p(), p(), p(), p(), p()).prop_map(|(p13, p31, p32, p23, p14)| Some(
            LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14
            }
        )),
    ]
}

/// Impairments that pass validation (latency and jitter up to an hour, every
/// percentage in range, rates from 8 bit/s to the maximum).
fn valid_impairment() -> impl Strategy<Value = LinkImpairment> {
    let delays = (0..=3_600_000_000u32, 0..=3_600_000_000u32, any::<u32>());
    let percents = (
        [percent(), percent(), percent(), percent()],
        [percent(), percent(), percent(), percent(), percent()],
    );
    let rest = (
        loss_model(),
        prop::option::of(8u64..=MAX_RATE.as_bits_per_sec()),
        prop::option::of(1u32..=u32::MAX),
        prop::option::of(any::<u64>()),
        prop::sample::select(vec![
            Distribution::Uniform,
            Distribution::Normal,
            Distribution::Pareto,
            Distribution::ParetoNormal,
        ]),
    );
    (delays, percents, rest).prop_map(
        |((latency, jitter, gap), ([loss, dup, corrupt, reorder], corr), rest)| {
            let (model, netem_rate, limit, seed, distribution) = rest;
            let mut imp = LinkImpairment {
                latency: latency.max(1),
                jitter,
                loss: if model.is_some() { 0.0 } else { loss },
                duplicate: dup,
                corrupt,
                reorder,
                gap: gap % 16,
                latency_correlation: corr[0],
                loss_correlation: corr[1],
                duplicate_correlation: corr[2],
                corrupt_correlation: corr[3],
                reorder_correlation: corr[4],
                loss_model: model,
                netem_rate: netem_rate.map(Rate::bits_per_sec),
                limit,
                seed,
                jitter_distribution: distribution,
                ..Default::default()
            };
            if imp.netem_rate.is_some_and(|r| r.as_bytes_per_sec() == 0) {
                imp.netem_rate = None;
            }
            imp
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn netem_survives_emit_and_parse(
        imp in valid_impairment(),
        limit in 1..=u32::MAX,
        ifindex in 1..=i32::MAX,
        h in handle(),
        parent in handle(),
    ) {
        prop_assert!(imp.validate().is_ok(), "{imp:?}");
        let msg = netem::qdisc(ifindex, h, parent, &imp, limit);
        let parsed = round_trip(&msg);
        prop_assert_eq!(parsed.header.index, ifindex);
        prop_assert_eq!(parsed.header.handle, h);
        prop_assert_eq!(parsed.header.parent, parent);
        let (kind, payload) = kind_and_options(&parsed);
        prop_assert_eq!(kind, "netem");
        prop_assert_eq!(&payload, &netem::options(&imp, limit));

        // struct tc_netem_qopt: latency, limit, loss, gap, duplicate, jitter.
        let loss = if imp.loss_model.is_some() { 0 } else { netem::percent(imp.loss) };
        let gap = if imp.reorder > 0.0 && imp.gap == 0 { 1 } else { imp.gap };
        let qopt: Vec<u32> = (0..6).map(|i| u32_at(&payload, i)).collect();
        prop_assert_eq!(qopt, vec![0, limit, loss, gap, netem::percent(imp.duplicate), 0]);

        let a = attrs(&payload[24..]);
        use netem::attr;
        let i64_of = |k: u16| a.get(&k).map(|v| i64::from_ne_bytes(v[..8].try_into().unwrap()));
        let u32s_of = |k: u16| a.get(&k).map(|v| (0..v.len() / 4).map(|i| u32_at(v, i)).collect::<Vec<_>>());
        prop_assert_eq!(i64_of(attr::LATENCY64), Some(i64::from(imp.latency) * 1000));
        prop_assert_eq!(i64_of(attr::JITTER64), (imp.jitter > 0).then(|| i64::from(imp.jitter) * 1000));
        let corr = [imp.latency_correlation, imp.loss_correlation, imp.duplicate_correlation];
        let correlated = corr.iter().chain([&imp.reorder_correlation, &imp.corrupt_correlation]).any(|c| *c > 0.0);
        prop_assert_eq!(u32s_of(attr::CORR), correlated.then(|| corr.map(netem::percent).to_vec()));
        prop_assert_eq!(
            u32s_of(attr::REORDER),
            (imp.reorder > 0.0).then(|| vec![netem::percent(imp.reorder), netem::percent(imp.reorder_correlation)])
        );
        prop_assert_eq!(
            u32s_of(attr::CORRUPT),
            (imp.corrupt > 0.0).then(|| vec![netem::percent(imp.corrupt), netem::percent(imp.corrupt_correlation)])
        );
        let rate = imp.netem_rate.map(Rate::as_bytes_per_sec);
        prop_assert_eq!(u32s_of(attr::RATE).map(|r| r[0]), rate.map(rate32));
        prop_assert_eq!(
            a.get(&attr::RATE64).map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap())),
            rate.filter(|r| needs_rate64(*r))
        );
        prop_assert_eq!(
            a.get(&attr::PRNG_SEED).map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap())),
            imp.seed
        );
        let table = imp.jitter > 0 && imp.jitter_distribution != Distribution::Uniform;
        prop_assert_eq!(a.contains_key(&attr::DELAY_DIST), table);
        let loss_nest = a.get(&(attr::LOSS | 0x8000));
        match imp.loss_model {
            None => prop_assert!(loss_nest.is_none()),
            Some(LossModel::GilbertElliott { p, r, bad_loss, good_loss }) => {
                let inner = attrs(loss_nest.unwrap());
                let ge = inner.get(&attr::LOSS_GE).unwrap();
                let got: Vec<u32> = (0..4).map(|i| u32_at(ge, i)).collect();
                let want = vec![
                    netem::percent(p.get()),
                    netem::percent(r.get()),
                    u32::MAX - netem::percent(bad_loss.get()),
                    netem::percent(good_loss.get()),
                ];
                prop_assert_eq!(got, want);
            }
            Some(LossModel::FourState { p13, p31, p32, p23, p14 }) => {
                let inner = attrs(loss_nest.unwrap());
                let gi = inner.get(&attr::LOSS_GI).unwrap();
                let got: Vec<u32> = (0..5).map(|i| u32_at(gi, i)).collect();
                let want: Vec<u32> = [p13, p31, p32, p14, p23].iter().map(|p| netem::percent(p.get())).collect();
                prop_assert_eq!(got, want);
            }
            Some(other) => prop_assert!(false, "a loss model this test does not know: {other:?}"),
        }
    }

    #[test]
    fn htb_survives_emit_and_parse(
        bits in 8u64..=MAX_RATE.as_bits_per_sec(),
        ifindex in 1..=i32::MAX,
        classid in handle(),
        parent in handle(),
        default_minor in any::<u16>(),
    ) {
        let psched = Psched::MODERN;
        let rate = Rate::bits_per_sec(bits);
        let parsed = round_trip(&htb::class(ifindex, classid, parent, &HtbClass::new(rate), &psched));
        prop_assert_eq!((parsed.header.index, parsed.header.handle, parsed.header.parent), (ifindex, classid, parent));
        let (kind, payload) = kind_and_options(&parsed);
        prop_assert_eq!(kind, "htb");
        prop_assert_eq!(&payload, &htb::class_options(&HtbClass::new(rate), &psched));
        let a = attrs(&payload);
        let parms = a.get(&htb::attr::PARMS).expect("PARMS");
        prop_assert_eq!(parms.len(), 44);
        let bytes = rate.as_bytes_per_sec();
        prop_assert_eq!(u32_at(parms, 2), rate32(bytes), "rate");
        prop_assert_eq!(u32_at(parms, 5), rate32(bytes), "ceil = rate");
        let rate64 = a.get(&htb::attr::RATE64).map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()));
        prop_assert_eq!(rate64, needs_rate64(bytes).then_some(bytes));
        prop_assert_eq!(a.get(&htb::attr::RTAB).map(Vec::len), Some(1024));

        let parsed = round_trip(&htb::qdisc(ifindex, classid, parent, default_minor));
        let (kind, payload) = kind_and_options(&parsed);
        prop_assert_eq!(kind, "htb");
        let init = attrs(&payload).remove(&htb::attr::INIT).expect("INIT");
        prop_assert_eq!(u32_at(&init, 2), u32::from(default_minor));
    }

    #[test]
    fn tbf_survives_emit_and_parse(
        bits in 8u64..=MAX_RATE.as_bits_per_sec(),
        burst_kib in prop::option::of(1u32..=4 * 1024 * 1024),
        queue_ms in prop::option::of(1u64..=3_600_000),
        ifindex in 1..=i32::MAX,
        h in handle(),
        parent in handle(),
    ) {
        let psched = Psched::MODERN;
        let mut imp = LinkImpairment::new().with_rate(Rate::bits_per_sec(bits));
        imp.burst_kib = burst_kib;
        imp.queue_latency = queue_ms.map(Duration::from_millis);
        prop_assume!(imp.validate().is_ok());
        let shaper = Tbf::from_impairment(&imp).expect("a rate gives a shaper");
        let parsed = round_trip(&tbf::qdisc(ifindex, h, parent, &shaper, &psched));
        prop_assert_eq!((parsed.header.index, parsed.header.handle, parsed.header.parent), (ifindex, h, parent));
        let (kind, payload) = kind_and_options(&parsed);
        prop_assert_eq!(kind, "tbf");
        prop_assert_eq!(&payload, &tbf::options(&shaper, &psched));
        let a = attrs(&payload);
        let parms = a.get(&tbf::attr::PARMS).expect("PARMS");
        prop_assert_eq!(parms.len(), 36);
        let bytes = shaper.rate.as_bytes_per_sec();
        prop_assert_eq!(u32_at(parms, 2), rate32(bytes), "rate");
        prop_assert_eq!(u32_at(parms, 6), shaper.limit_bytes(), "limit");
        prop_assert_eq!(a.get(&tbf::attr::BURST).map(|v| u32_at(v, 0)), Some(shaper.burst));
        if let Some(kib) = burst_kib {
            prop_assert_eq!(shaper.burst, kib * 1024);
        }
        let rate64 = a.get(&tbf::attr::RATE64).map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()));
        prop_assert_eq!(rate64, needs_rate64(bytes).then_some(bytes));
    }

    #[test]
    fn filters_survive_emit_and_parse(
        v4 in any::<[u8; 4]>(),
        v6 in any::<[u8; 16]>(),
        use_v6 in any::<bool>(),
        class_minor in 1u16..=0xffff,
        redirect in prop::option::of(1u32..=i32::MAX as u32),
        ifindex in 1..=i32::MAX,
    ) {
        let addr: IpAddr = if use_v6 { v6.into() } else { v4.into() };
        let class = TcHandle { major: 1, minor: class_minor };
        let target = match redirect {
            Some(ifindex) => FilterTarget::Redirect { ifindex },
            None => FilterTarget::Class(class),
        };
        let parsed = round_trip(&filter::dst_filter(ifindex, TcHandle { major: 1, minor: 0 }, addr, target));
        let family = Family::of(addr);
        prop_assert_eq!(parsed.header.index, ifindex);
        prop_assert_eq!(u32::from(parsed.header.handle), filter::dst_handle(addr).0);
        prop_assert_eq!(parsed.header.info, filter::info(family.prio(), family.protocol()));
        prop_assert!(parsed.attributes.contains(&TcAttribute::Kind("u32".into())));
        let options: Vec<TcFilterU32Option> = parsed
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Options(o) => Some(o.iter().map(|o| match o {
                    TcOption::U32(u) => u.clone(),
                    other => panic!("not a u32 option: {other:?}"),
                }).collect()),
                _ => None,
            })
            .expect("options");
        let mut seen_target = false;
        let mut seen_selector = false;
        let mut seen_hash = false;
        for option in &options {
            match option {
                TcFilterU32Option::ClassId(c) => {
                    prop_assert_eq!(target, FilterTarget::Class(*c));
                    seen_target = true;
                }
                TcFilterU32Option::Action(actions) => {
                    let [TcAction { attributes, .. }] = actions.as_slice() else {
                        panic!("one action: {actions:?}");
                    };
                    prop_assert!(attributes.contains(&TcActionAttribute::Kind("mirred".into())));
                    let mirror = attributes.iter().find_map(|a| match a {
                        TcActionAttribute::Options(o) => o.iter().find_map(|o| match o {
                            TcActionOption::Mirror(TcActionMirrorOption::Parms(m)) => Some(m.clone()),
                            _ => None,
                        }),
                        _ => None,
                    }).expect("mirred parameters");
                    prop_assert_eq!(target, FilterTarget::Redirect { ifindex: mirror.ifindex });
                    seen_target = true;
                }
                TcFilterU32Option::Hash(h) => {
                    prop_assert_eq!(*h, filter::dst_handle(addr).bucket_id());
                    seen_hash = true;
                }
                TcFilterU32Option::Selector(sel) => {
                    prop_assert!(sel.flags.contains(TcU32SelectorFlags::Terminal));
                    prop_assert_eq!(&sel.keys, &filter::dst_keys(addr));
                    prop_assert_eq!(usize::from(sel.nkeys), sel.keys.len());
                    seen_selector = true;
                }
                other => prop_assert!(false, "unexpected option {other:?}"),
            }
        }
        prop_assert!(seen_target && seen_selector && seen_hash);
    }
}

/// Any f64, weighted towards the edges of the rules.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(100.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(1e-7),
        -1.0..101.0f64,
        any::<f64>(),
    ]
}

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(3_600_000_000),
        Just(3_600_000_001),
        any::<u32>()
    ]
}

fn any_impairment() -> BoxedStrategy<LinkImpairment> {
    // Boxed: the nested strategy types overflow the test thread's stack in debug builds.
    let floats = prop::array::uniform10(any_f64().boxed()).boxed();
    let ints = (any_u32(), any_u32(), any_u32()).boxed();
    let model = prop_oneof![
        Just(None),
        prop::array::uniform4(any_f64()).prop_map(|p| Some(LossModel::GilbertElliott {
            p: Percent(p[0]),
            r: Percent(p[1]),
            bad_loss: Percent(p[2]),
            good_loss: Percent(p[3]),
        })),
        prop::array::uniform5(any_f64()).prop_map(|p| Some(LossModel::FourState {
            p13: Percent(p[0]),
            p31: Percent(p[1]),
            p32: Percent(p[2]),
            p23: Percent(p[3]),
            p14: Percent(p[4]),
        })),
    ]
    .boxed();
    let options = (
        prop::option::of(any_f64()),
        prop::option::of(any_u32()),
        prop::option::of(prop_oneof![Just(0u64), 0..4_000_000_000u64, any::<u64>()]),
        prop::option::of(any_u32()),
        prop::option::of(prop_oneof![Just(0u64), any::<u64>()]),
    )
        .boxed();
    (floats, ints, model, options)
        .prop_map(|(f, (latency, jitter, gap), model, o)| LinkImpairment {
            latency,
            jitter,
            gap: gap % 4,
            loss: f[0],
            duplicate: f[1],
            corrupt: f[2],
            reorder: f[3],
            latency_correlation: f[4],
            loss_correlation: f[5],
            duplicate_correlation: f[6],
            corrupt_correlation: f[7],
            reorder_correlation: f[8],
            bandwidth_mbit_s: o.0,
            burst_kib: o.1,
            queue_latency: o.2.map(Duration::from_millis),
            limit: o.3,
            netem_rate: o.4.map(Rate::bits_per_sec),
            loss_model: model,
            ..Default::default()
        })
        .boxed()
}

/// The rules of `validate`, restated independently.
fn acceptable(imp: &LinkImpairment) -> bool {
    let pct = |v: f64| v.is_finite() && (0.0..=100.0).contains(&v);
    let percents = [
        imp.loss,
        imp.duplicate,
        imp.corrupt,
        imp.reorder,
        imp.latency_correlation,
        imp.loss_correlation,
        imp.duplicate_correlation,
        imp.corrupt_correlation,
        imp.reorder_correlation,
    ];
    let model_ok = match imp.loss_model {
        None => true,
        Some(LossModel::GilbertElliott {
            p,
            r,
            bad_loss,
            good_loss,
        }) => [p, r, bad_loss, good_loss].iter().all(|p| pct(p.0)) && imp.loss == 0.0,
        Some(LossModel::FourState {
            p13,
            p31,
            p32,
            p23,
            p14,
        }) => [p13, p31, p32, p23, p14].iter().all(|p| pct(p.0)) && imp.loss == 0.0,
        Some(_) => false,
    };
    let max_us = MAX_DELAY.as_micros() as u32;
    let shaped = imp.bandwidth_mbit_s.is_some();
    let rate_ok = imp.bandwidth_mbit_s.is_none_or(|m| {
        m.is_finite() && m > 0.0 && (m * 1e6).round() >= 8.0 && Rate::from_mbit_f64(m) <= MAX_RATE
    });
    let netem_rate_ok = imp
        .netem_rate
        .is_none_or(|r| r.as_bits_per_sec() >= 8 && r <= MAX_RATE);
    percents.iter().all(|v| pct(*v))
        && model_ok
        && imp.latency <= max_us
        && imp.jitter <= max_us
        && (imp.latency > 0 || (imp.reorder == 0.0 && imp.gap == 0))
        && rate_ok
        && netem_rate_ok
        && imp
            .burst_kib
            .is_none_or(|k| (1..=4 * 1024 * 1024).contains(&k) && shaped)
        && imp
            .queue_latency
            .is_none_or(|q| !q.is_zero() && q <= MAX_DELAY && shaped)
        && imp.limit != Some(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validate_accepts_exactly_what_the_rules_allow(imp in any_impairment()) {
        let verdict = imp.validate();
        prop_assert_eq!(verdict.is_ok(), acceptable(&imp), "{:?}: {:?}", imp, verdict);
        if verdict.is_ok() {
            // What validation lets through encodes without panicking.
            let _ = netem::options(&imp, netem::effective_limit(&imp));
            if let Some(shaper) = Tbf::from_impairment(&imp) {
                let _ = tbf::options(&shaper, &Psched::MODERN);
            }
        }
    }

    #[test]
    fn validate_accepts_every_valid_impairment(imp in valid_impairment()) {
        prop_assert!(imp.validate().is_ok(), "{imp:?}");
    }
}
