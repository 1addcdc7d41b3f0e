//! Bad input is refused before the kernel: every invalid value of every field.

use super::*;

/// The traffic-control state of peers 1 and 2, as `tc` shows it.
fn tc_state(net: &Network) -> String {
    let mut out = String::new();
    for peer in [P1, P2] {
        for what in ["qdisc", "class", "filter"] {
            let o = oracle_command(net, peer, "tc")
                .args([what, "show", "dev", "eth0"])
                .output()
                .expect("run tc");
            assert!(o.status.success(), "tc {what} show failed");
            out += &format!(
                "peer {peer} {what}:\n{}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
    out
}

fn imp(f: impl FnOnce(&mut LinkImpairment)) -> LinkImpairment {
    let mut imp = LinkImpairment::default();
    f(&mut imp);
    imp
}

/// Every invalid value of every impairment field, with the field the error must name.
fn invalid_impairments() -> Vec<(LinkImpairment, &'static str)> {
    let mut cases = Vec::new();
    let bad_percents = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.001,
        100.001,
        1e9,
    ];
    type Setter = fn(&mut LinkImpairment, f64);
    let percent_fields: [(&str, Setter); 9] = [
        ("loss", |i, v| i.loss = v),
        ("duplicate", |i, v| i.duplicate = v),
        ("corrupt", |i, v| i.corrupt = v),
        ("reorder", |i, v| {
            i.reorder = v;
            i.latency = 1000;
        }),
        ("latency_correlation", |i, v| i.latency_correlation = v),
        ("loss_correlation", |i, v| i.loss_correlation = v),
        ("duplicate_correlation", |i, v| i.duplicate_correlation = v),
        ("corrupt_correlation", |i, v| i.corrupt_correlation = v),
        ("reorder_correlation", |i, v| i.reorder_correlation = v),
    ];
    for (field, set) in percent_fields {
        for v in bad_percents {
            cases.push((imp(|i| set(i, v)), field));
        }
    }
    let ge = |k: usize, v: f64| {
        let mut p = [Percent(1.0), Percent(10.0), Percent(100.0), Percent(0.0)];
        p[k] = Percent(v);
        LossModel::GilbertElliott {
            p: p[0],
            r: p[1],
            bad_loss: p[2],
            good_loss: p[3],
        }
    };
    let four = |k: usize, v: f64| {
        let mut p = [Percent(1.0); 5];
        p[k] = Percent(v);
        LossModel::FourState {
            p13: p[0],
            p31: p[1],
            p32: p[2],
            p23: p[3],
            p14: p[4],
        }
    };
    for v in [f64::NAN, -1.0, 100.5, f64::INFINITY] {
        for (k, field) in [
            "loss_model.p",
            "loss_model.r",
            "loss_model.bad_loss",
            "loss_model.good_loss",
        ]
        .into_iter()
        .enumerate()
        {
            cases.push((LinkImpairment::new().with_loss_model(ge(k, v)), field));
        }
        for (k, field) in [
            "loss_model.p13",
            "loss_model.p31",
            "loss_model.p32",
            "loss_model.p23",
            "loss_model.p14",
        ]
        .into_iter()
        .enumerate()
        {
            cases.push((LinkImpairment::new().with_loss_model(four(k, v)), field));
        }
    }
    cases.extend([
        // Random loss beside a loss model.
        (
            LinkImpairment::new()
                .with_loss(1.0)
                .with_loss_model(ge(0, 1.0)),
            "loss",
        ),
        // Huge durations.
        (imp(|i| i.latency = u32::MAX), "latency"),
        (imp(|i| i.latency = 3_600_000_001), "latency"),
        (LinkImpairment::new().with_latency(Duration::MAX), "latency"),
        (imp(|i| i.jitter = u32::MAX), "jitter"),
        (
            LinkImpairment::new()
                .with_latency(Duration::from_millis(1))
                .with_jitter(Duration::from_secs(3601)),
            "jitter",
        ),
        // Reordering without a delay to reorder against.
        (imp(|i| i.reorder = 10.0), "reorder"),
        (imp(|i| i.gap = 5), "reorder"),
        // Rates: zero, negative, not a number, below 8 bit/s, above the maximum.
        (imp(|i| i.bandwidth_mbit_s = Some(0.0)), "bandwidth_mbit_s"),
        (imp(|i| i.bandwidth_mbit_s = Some(-1.0)), "bandwidth_mbit_s"),
        (
            imp(|i| i.bandwidth_mbit_s = Some(f64::NAN)),
            "bandwidth_mbit_s",
        ),
        (
            imp(|i| i.bandwidth_mbit_s = Some(f64::INFINITY)),
            "bandwidth_mbit_s",
        ),
        (imp(|i| i.bandwidth_mbit_s = Some(1e-7)), "bandwidth_mbit_s"),
        (imp(|i| i.bandwidth_mbit_s = Some(2e12)), "bandwidth_mbit_s"),
        (
            LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(0)),
            "netem_rate",
        ),
        (
            LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(7)),
            "netem_rate",
        ),
        (
            LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(u64::MAX)),
            "netem_rate",
        ),
        // Burst: zero, too large, without a rate.
        (
            imp(|i| {
                i.bandwidth_mbit_s = Some(10.0);
                i.burst_kib = Some(0);
            }),
            "burst_kib",
        ),
        (
            imp(|i| {
                i.bandwidth_mbit_s = Some(10.0);
                i.burst_kib = Some(u32::MAX);
            }),
            "burst_kib",
        ),
        (LinkImpairment::new().with_burst(64 * 1024), "burst_kib"),
        // Queue latency: zero, too long, without a rate.
        (
            LinkImpairment::new()
                .with_rate(Rate::mbit(10))
                .with_queue_latency(Duration::ZERO),
            "queue_latency",
        ),
        (
            LinkImpairment::new()
                .with_rate(Rate::mbit(10))
                .with_queue_latency(Duration::from_secs(3601)),
            "queue_latency",
        ),
        (
            LinkImpairment::new().with_queue_latency(Duration::from_millis(10)),
            "queue_latency",
        ),
        // A queue of no packets.
        (LinkImpairment::new().with_limit(0), "limit"),
    ]);
    cases
}

fn assert_invalid(result: Result<(), Error>, want: &str, case: &str) {
    match result {
        Err(Error::InvalidImpairment { field, value, rule }) => {
            assert_eq!(field, want, "{case}");
            assert!(!value.is_empty() && !rule.is_empty(), "{case}");
        }
        other => panic!("{case}: expected InvalidImpairment of {want}, got {other:?}"),
    }
}

#[linkem::test(backend = "kernel")]
async fn every_invalid_value_is_refused_before_the_kernel() -> Result<(), Error> {
    // Subnets: refused by Network::new before any namespace exists.
    let own = own_netns_inodes();
    let v4 = |a: [u8; 4], len| Subnet::new(a.into(), len);
    let v6 = |a: &str, len| Subnet::new(a.parse().unwrap(), len);
    let bad_subnets = [
        v4([10, 0, 0, 1], 24),
        v4([10, 0, 0, 0], 31),
        v4([10, 0, 0, 0], 32),
        v4([10, 0, 0, 0], 33),
        v4([10, 0, 0, 0], 255),
        v4([127, 0, 0, 0], 8),
        v4([224, 0, 0, 0], 24),
        v4([0, 0, 0, 0], 8),
        v6("fd00::1", 64),
        v6("fd00::", 127),
        v6("fd00::", 129),
        v6("ff02::", 64),
        v6("::", 64),
        v6("::1", 126),
    ];
    for bad in bad_subnets {
        match Network::new(bad).await {
            Err(Error::InvalidSubnet {
                addr, prefix_len, ..
            }) => {
                assert_eq!((addr, prefix_len), (bad.addr(), bad.prefix_len()), "{bad}");
            }
            other => panic!("{bad}: expected InvalidSubnet, got {other:?}"),
        }
        assert!(
            matches!(
                Subnet::try_new(bad.addr(), bad.prefix_len()),
                Err(Error::InvalidSubnet { .. })
            ),
            "{bad}: try_new"
        );
    }
    assert_eq!(
        own_netns_inodes(),
        own,
        "a refused subnet created a namespace"
    );

    // An exhausted subnet: refused before the peer's namespace is created.
    for (subnet, capacity) in [(v4([10, 0, 0, 0], 30), 2), (v6("fd00::", 126), 3)] {
        let mut net = Network::new(subnet).await?;
        for _ in 0..capacity {
            net.add_peer().await?;
        }
        let own = own_netns_inodes();
        match net.add_peer().await {
            Err(Error::SubnetExhausted {
                capacity: c, peer, ..
            }) => {
                assert_eq!(c, capacity as u128, "{subnet}");
                assert_eq!(peer, PeerId(capacity + 1), "{subnet}");
            }
            other => panic!("{subnet}: expected SubnetExhausted, got {other:?}"),
        }
        assert_eq!(
            own_netns_inodes(),
            own,
            "{subnet}: a refused peer made a namespace"
        );
        assert_eq!(net.peer_count(), capacity);
    }

    // Impairments and links, on a network whose link 1 -> 2 already has a tree.
    let net = network(2).await?;
    let shaped = LinkImpairment::new().with_rate(Rate::mbit(10));
    net.apply_impairment(Link::new(P1, P2), shaped.clone())
        .await?;
    // The oracle of what the backend built: the kernel's tc objects (the userspace
    // backend builds none: its engine's state shows in the link's counters, whose
    // count of packets must not move either).
    let kernel = net.backend() == linkem::network::BackendKind::Kernel;
    let state = tc_state(&net);
    if kernel {
        assert!(state.contains("tbf"), "the valid shaper is built:\n{state}");
    } else {
        assert!(
            !state.contains("htb"),
            "the userspace backend built a tc tree:\n{state}"
        );
    }
    let unchanged = |case: &str| {
        let now = tc_state(&net);
        assert_eq!(now, state, "{case}: the kernel's state changed");
    };
    let cases = invalid_impairments();
    assert!(cases.len() > 100, "{} cases", cases.len());
    for (bad, field) in &cases {
        let case = format!("{field} in {bad:?}");
        assert_invalid(
            net.apply_impairment(Link::new(P1, P2), bad.clone()).await,
            field,
            &case,
        );
        assert_invalid(
            net.apply_impairment(Link::new(P2, P1), bad.clone()).await,
            field,
            &case,
        );
        assert_invalid(
            net.apply_impairment_both(P1, P2, bad.clone()).await,
            field,
            &case,
        );
        assert_invalid(net.apply_impairment_all(bad.clone()).await, field, &case);
        assert_invalid(bad.validate(), field, &case);
    }
    unchanged("invalid impairments");
    assert_eq!(net.impairment(Link::new(P1, P2)).await?, shaped);
    assert_eq!(
        net.impairment(Link::new(P2, P1)).await?,
        LinkImpairment::new()
    );
    // A plain wire: no qdisc of its own on the kernel; counted, and untouched by the
    // refusals, on the userspace backend.
    let plain = net.link_stats(Link::new(P2, P1)).await?;
    if kernel {
        assert_eq!(plain, None);
    } else {
        let fates = plain
            .and_then(|s| s.fates)
            .expect("the userspace backend counts every link");
        assert_eq!(
            fates.dropped_loss + fates.dropped_queue + fates.dropped_partition,
            0
        );
    }

    // Links: a peer to itself, unknown peers (0 and beyond the last).
    let ok = LinkImpairment::new().with_rate(Rate::mbit(1));
    let self_link = Link::new(P1, P1);
    for r in [
        net.apply_impairment(self_link, ok.clone()).await,
        net.apply_impairment_both(P1, P1, ok.clone()).await,
        net.clear_impairment(self_link).await,
        net.partition(P1, P1).await,
        net.partition_one_way(self_link).await,
        net.heal(P1, P1).await,
        net.heal_one_way(self_link).await,
        net.impairment(self_link).await.map(drop),
        net.link_stats(self_link).await.map(drop),
    ] {
        assert!(
            matches!(r, Err(Error::SelfLink(l)) if l == self_link),
            "{r:?}"
        );
    }
    for unknown in [PeerId(0), PeerId(3), PeerId(usize::MAX)] {
        for r in [
            net.apply_impairment(Link::new(P1, unknown), ok.clone())
                .await,
            net.apply_impairment(Link::new(unknown, P1), ok.clone())
                .await,
            net.apply_impairment_both(unknown, P2, ok.clone()).await,
            net.clear_impairment(Link::new(P2, unknown)).await,
            net.partition(P1, unknown).await,
            net.heal(unknown, P1).await,
            net.isolate(unknown).await,
            net.rejoin(unknown).await,
            net.impairment(Link::new(P1, unknown)).await.map(drop),
            net.link_stats(Link::new(unknown, P2)).await.map(drop),
            net.addr(unknown).map(drop),
            net.context(unknown).map(drop),
            net.command(unknown, "true").map(drop),
            net.std_command(unknown, "true").map(drop),
            net.run_in_namespace(unknown, |_| async {}).await,
        ] {
            assert!(
                matches!(r, Err(Error::UnknownPeer(p)) if p == unknown),
                "{unknown}: {r:?}"
            );
        }
    }
    unchanged("invalid links");

    // The network stays usable, the valid shaper included.
    assert_usable(&net).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_rate(Rate::mbit(20)),
    )
    .await?;
    assert_usable(&net).await
}
