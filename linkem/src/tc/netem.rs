//! netem's options: delay, jitter, loss, duplication, corruption, reordering, rate.
//!
//! netem's `TCA_OPTIONS` payload is the flat `struct tc_netem_qopt` (six `u32`: latency,
//! limit, loss, gap, duplicate, jitter) *followed by* netem's own attributes, with no
//! nesting header of its own (the kernel's `parse_attr` skips the struct and parses the
//! rest). It therefore travels as an opaque attribute ([`nla::options`]), never as
//! nested options.
//!
//! [`options`] produces exactly what iproute2 6.15's `tc qdisc add ... netem` sends for
//! the same settings (see `linkem/tests/tc_fixtures.rs`):
//! - `qopt.latency` and `qopt.jitter` stay 0; the delay goes in `TCA_NETEM_LATENCY64` and
//!   `TCA_NETEM_JITTER64`, signed nanoseconds (tc >= 6.9; the kernel reads them since
//!   4.15). A distribution changes nothing there: the table travels separately in
//!   `TCA_NETEM_DELAY_DIST` and scales the jitter.
//! - Probabilities are `rint(p * u32::MAX)`, so 100 % is `0xffffffff`.
//! - Random loss and duplication sit in the struct; their correlations, and the delay's,
//!   in `TCA_NETEM_CORR`.
//! - Reordering without a gap is sent with gap 1, as tc does: with gap 0 the kernel never
//!   reorders.
//! - `rate` is `TCA_NETEM_RATE` (`struct tc_netem_rate`, bytes/s); from 2^32 bytes/s on,
//!   its `rate` is `u32::MAX` and the real value is in `TCA_NETEM_RATE64`, which comes
//!   first.
//! - Attribute order: LATENCY64, JITTER64, CORR, REORDER, CORRUPT, LOSS (nested), RATE64,
//!   RATE, PRNG_SEED, DELAY_DIST.
//! - `TCA_NETEM_PRNG_SEED` (a `u64`, as tc's `seed N`) seeds netem's generator. The
//!   kernel knows it since Linux 6.6 (François Michel's "netem: add prng attribute to
//!   netem_sched_data"); older kernels drop it silently (netem's `parse_attr` ignores
//!   attributes above its policy's maximum). From 6.6 on, `netem_change` re-seeds the
//!   generator on every change (with a random seed when the attribute is absent), and
//!   `netem_dump` always reports the seed in use: [`dumped_seed`] reads it back, which
//!   is how the kernel backend tells whether seeds are honoured. The seed drives every
//!   draw of the loss, duplication, corruption, reordering and delay decisions; which
//!   bit a corruption flips still comes from the kernel's own `get_random_u32_below`.
//!
//! One deliberate difference: tc forgets `TCA_NETEM_CORR` when only the duplication has
//! a correlation (`duplicate 5% 20%` alone), so the kernel never sees it; linkem sends it.
//!
//! Changing a running netem ([`change_options`]) needs more than tc sends: the kernel's
//! `netem_change` resets the struct's fields and the loss model, but *keeps* the
//! correlations, reordering, corruption, rate and delay table of the previous settings
//! when their attributes are absent. The change payload therefore always carries CORR,
//! REORDER, CORRUPT and RATE (zero when unused), and a uniform table when a table has to
//! be undone.

use rtnetlink::packet_route::tc::{TcHandle, TcMessage};

use crate::impairment::{LinkImpairment, LossModel, Rate, PERCENTS};
use crate::tc::dist;
use crate::tc::nla;
use crate::tc::psched::{needs_rate64, rate32};

/// The qdisc kind.
pub const KIND: &str = "netem";

/// tc's default queue length (packets).
pub const TC_DEFAULT_LIMIT: u32 = 1000;
/// The smallest limit [`auto_limit`] picks.
pub const MIN_AUTO_LIMIT: u32 = 1000;
/// The packet size [`auto_limit`] counts with (an Ethernet MTU).
pub const AUTO_LIMIT_PACKET: u64 = 1500;
/// The rate [`auto_limit`] assumes for a link without any rate limit: about what a veth
/// pair carries on a small machine. A faster sender overflows a long delay line sooner.
pub const ASSUMED_LINK_RATE: Rate = Rate::gbit(10);

/// `TCA_NETEM_*` attribute types.
pub mod attr {
    /// `struct tc_netem_corr`.
    pub const CORR: u16 = 1;
    /// The delay distribution table, `i16`s.
    pub const DELAY_DIST: u16 = 2;
    /// `struct tc_netem_reorder`.
    pub const REORDER: u16 = 3;
    /// `struct tc_netem_corrupt`.
    pub const CORRUPT: u16 = 4;
    /// Nested loss model.
    pub const LOSS: u16 = 5;
    /// `struct tc_netem_rate`.
    pub const RATE: u16 = 6;
    /// `u64` bytes/s.
    pub const RATE64: u16 = 8;
    /// `i64` nanoseconds.
    pub const LATENCY64: u16 = 10;
    /// `i64` nanoseconds.
    pub const JITTER64: u16 = 11;
    /// `u64`.
    pub const PRNG_SEED: u16 = 14;
    /// Inside LOSS: `struct tc_netem_gimodel` (4 states).
    pub const LOSS_GI: u16 = 1;
    /// Inside LOSS: `struct tc_netem_gemodel` (Gilbert-Elliott).
    pub const LOSS_GE: u16 = 2;
}

/// `NLA_F_NESTED`: tc marks the LOSS nest with it.
const NLA_F_NESTED: u16 = 1 << 15;

/// A percentage as netem's scaled `u32` (tc's `set_percent`): `rint(p / 100 * u32::MAX)`.
pub fn percent(p: f64) -> u32 {
    (p / 100.0 * f64::from(u32::MAX)).round_ties_even() as u32
}

/// The netem queue length linkem uses: the impairment's own `limit`, else
/// [`auto_limit`].
pub fn effective_limit(imp: &LinkImpairment) -> u32 {
    imp.limit.unwrap_or_else(|| auto_limit(imp))
}

/// A queue length that holds what the link has in flight: the bandwidth-delay product,
/// plus the shaper's queue when there is one, in packets of 1500 bytes, doubled for
/// margin, and at least 1000 (tc's default).
///
/// netem holds every packet for its delay, so at `r` bytes/s and `d` seconds it holds
/// `r * d` bytes; tc's fixed 1000 packets drop silently beyond 12 Mbit/s at 1 s, or
/// 120 Mbit/s at 100 ms. The rate is the smaller of the shaper's and netem's own; with
/// neither, [`ASSUMED_LINK_RATE`]. The delay is `latency + jitter` (the jittered
/// maximum, for the uniform case).
///
/// With a shaper, netem comes first and takes packets at the *sender's* pace: a TCP
/// sender whose window has grown to the path plus the shaper's queue sends that window
/// in bursts (slow start, super-packets), all of which sit in netem's delay line at
/// once. Sized for the path alone (1668 packets at 1 Gbit/s with 10 ms), netem dropped
/// 3,743 packets of one flow on the userspace engine while the shaper's queue had room;
/// sized for both (11,668), none.
pub fn auto_limit(imp: &LinkImpairment) -> u32 {
    let rate = [imp.rate(), imp.netem_rate]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(ASSUMED_LINK_RATE);
    let delay_us = u64::from(imp.latency) + u64::from(imp.jitter);
    // bytes/s * us / 1e6 = bytes; u128 keeps 1000 Tbit/s * 2h exact.
    let path = u128::from(rate.as_bytes_per_sec()) * u128::from(delay_us) / 1_000_000;
    let shaper_queue = crate::tc::tbf::Tbf::from_impairment(imp).map_or(0, |t| t.limit_bytes());
    let bytes = path + u128::from(shaper_queue);
    let packets = bytes.div_ceil(u128::from(AUTO_LIMIT_PACKET)) * 2;
    u32::try_from(packets)
        .unwrap_or(u32::MAX)
        .max(MIN_AUTO_LIMIT)
}

/// Size of `struct tc_netem_qopt`, which precedes netem's attributes.
const QOPT_LEN: usize = 24;

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Which optional attributes to force, for a change of a running netem.
#[derive(Clone, Copy)]
struct Reset<'a> {
    previous: Option<&'a LinkImpairment>,
}

fn build(imp: &LinkImpairment, limit: u32, reset: Reset<'_>) -> Vec<u8> {
    let forced = reset.previous.is_some();
    let reorder = imp.reorder > 0.0;
    // tc turns "reorder without gap" into gap 1: with gap 0 the kernel never reorders.
    let gap = if reorder && imp.gap == 0 { 1 } else { imp.gap };
    let loss = if imp.loss_model.is_some() {
        0
    } else {
        percent(imp.loss)
    };

    // struct tc_netem_qopt: latency, limit, loss, gap, duplicate, jitter. The 32-bit
    // tick fields stay 0: LATENCY64/JITTER64 replace them.
    let mut out = u32s(&[0, limit, loss, gap, percent(imp.duplicate), 0]);

    if imp.latency > 0 || imp.jitter > 0 {
        nla::put_i64(&mut out, attr::LATENCY64, i64::from(imp.latency) * 1000);
    }
    if imp.jitter > 0 {
        nla::put_i64(&mut out, attr::JITTER64, i64::from(imp.jitter) * 1000);
    }
    let correlated = PERCENTS
        .iter()
        .any(|field| field.correlation && (field.get)(imp) > 0.0);
    if correlated || forced {
        let corr = [
            percent(imp.latency_correlation),
            percent(imp.loss_correlation),
            percent(imp.duplicate_correlation),
        ];
        nla::put(&mut out, attr::CORR, &u32s(&corr));
    }
    if reorder || forced {
        let r = [percent(imp.reorder), percent(imp.reorder_correlation)];
        nla::put(&mut out, attr::REORDER, &u32s(&r));
    }
    if imp.corrupt > 0.0 || forced {
        let c = [percent(imp.corrupt), percent(imp.corrupt_correlation)];
        nla::put(&mut out, attr::CORRUPT, &u32s(&c));
    }
    if let Some(model) = &imp.loss_model {
        nla::put_nested(&mut out, attr::LOSS | NLA_F_NESTED, |loss| match *model {
            LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => {
                // struct tc_netem_gimodel's order is p13, p31, p32, p14, p23 (tc's
                // command line says p23 before p14).
                let gi = [p13, p31, p32, p14, p23].map(|p| percent(p.get()));
                nla::put(loss, attr::LOSS_GI, &u32s(&gi));
            }
            LossModel::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            } => {
                // The kernel wants h, the chance of *no* loss in the bad state; tc's
                // third argument (our bad_loss) is 1-h. k1 is already 1-k.
                let ge = [
                    percent(p.get()),
                    percent(r.get()),
                    u32::MAX - percent(bad_loss.get()),
                    percent(good_loss.get()),
                ];
                nla::put(loss, attr::LOSS_GE, &u32s(&ge));
            }
        });
    }
    let rate = imp.netem_rate.map(Rate::as_bytes_per_sec);
    if rate.is_some() || forced {
        let rate = rate.unwrap_or(0);
        if needs_rate64(rate) {
            nla::put_u64(&mut out, attr::RATE64, rate);
        }
        // struct tc_netem_rate: rate, packet_overhead, cell_size, cell_overhead.
        nla::put(&mut out, attr::RATE, &u32s(&[rate32(rate), 0, 0, 0]));
    }
    if let Some(seed) = imp.seed {
        nla::put_u64(&mut out, attr::PRNG_SEED, seed);
    }
    if imp.jitter > 0 {
        let had_table = reset
            .previous
            .is_some_and(|old| dist::table(old.jitter_distribution).is_some());
        match dist::table(imp.jitter_distribution) {
            Some(table) => nla::put(&mut out, attr::DELAY_DIST, &dist::table_bytes(table)),
            None if had_table => nla::put(
                &mut out,
                attr::DELAY_DIST,
                &dist::table_bytes(&dist::uniform()),
            ),
            None => {}
        }
    }
    out
}

/// The `TCA_OPTIONS` payload that creates a netem with these settings and queue length.
///
/// The impairment should have passed [`LinkImpairment::validate`]; out-of-range
/// percentages saturate.
pub fn options(imp: &LinkImpairment, limit: u32) -> Vec<u8> {
    build(imp, limit, Reset { previous: None })
}

/// The `TCA_OPTIONS` payload that turns a running netem configured with `previous` into
/// one with `imp`, in place (see the module docs for what it adds to [`options`]).
pub fn change_options(imp: &LinkImpairment, limit: u32, previous: &LinkImpairment) -> Vec<u8> {
    build(
        imp,
        limit,
        Reset {
            previous: Some(previous),
        },
    )
}

/// The seed a netem's dumped `TCA_OPTIONS` payload reports (`TCA_NETEM_PRNG_SEED`
/// after the struct), `None` when the kernel does not report one (before Linux 6.6).
pub fn dumped_seed(options: &[u8]) -> Option<u64> {
    let attrs = options.get(QOPT_LEN..)?;
    nla::iter(attrs).find_map(|(kind, value)| {
        (kind == attr::PRNG_SEED)
            .then(|| value.try_into().ok().map(u64::from_ne_bytes))
            .flatten()
    })
}

/// The message (for `RTM_NEWQDISC`) of a netem `handle` under `parent` on `ifindex`.
pub fn qdisc(
    ifindex: i32,
    handle: TcHandle,
    parent: TcHandle,
    imp: &LinkImpairment,
    limit: u32,
) -> TcMessage {
    crate::tc::qdisc_message(ifindex, handle, parent, KIND, options(imp, limit))
}

/// The message (for `RTM_NEWQDISC` without `NLM_F_CREATE`) that changes a running
/// netem from `previous` to `imp`.
pub fn change_qdisc(
    ifindex: i32,
    handle: TcHandle,
    parent: TcHandle,
    imp: &LinkImpairment,
    limit: u32,
    previous: &LinkImpairment,
) -> TcMessage {
    crate::tc::qdisc_message(
        ifindex,
        handle,
        parent,
        KIND,
        change_options(imp, limit, previous),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impairment::{Distribution, Percent};
    use std::time::Duration;

    fn attrs(payload: &[u8]) -> Vec<(u16, Vec<u8>)> {
        nla::iter(&payload[24..])
            .map(|(k, v)| (k, v.to_vec()))
            .collect()
    }

    fn kinds(payload: &[u8]) -> Vec<u16> {
        attrs(payload).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn percent_scale() {
        assert_eq!(percent(0.0), 0);
        assert_eq!(percent(100.0), u32::MAX);
        assert_eq!(percent(25.0), 0x4000_0000);
        assert_eq!(percent(1.5), 64_424_509);
        assert_eq!(percent(150.0), u32::MAX, "saturates");
    }

    #[test]
    fn empty_netem_is_just_the_struct() {
        let o = options(&LinkImpairment::new(), 1000);
        assert_eq!(o.len(), 24);
        assert_eq!(&o[4..8], &1000u32.to_ne_bytes());
    }

    #[test]
    fn delay_goes_in_64_bit_nanoseconds() {
        let imp = LinkImpairment::new()
            .with_latency(Duration::from_millis(10))
            .with_jitter(Duration::from_millis(2));
        let a = attrs(&options(&imp, 1000));
        assert_eq!(
            a[0],
            (attr::LATENCY64, 10_000_000i64.to_ne_bytes().to_vec())
        );
        assert_eq!(a[1], (attr::JITTER64, 2_000_000i64.to_ne_bytes().to_vec()));
        assert_eq!(a.len(), 2, "uniform jitter needs no table");
    }

    #[test]
    fn table_only_with_jitter() {
        let imp = LinkImpairment::new()
            .with_latency(Duration::from_millis(10))
            .with_distribution(Distribution::Normal);
        assert_eq!(kinds(&options(&imp, 1000)), [attr::LATENCY64]);
        let imp = imp.with_jitter(Duration::from_millis(1));
        let a = attrs(&options(&imp, 1000));
        assert_eq!(a.last().unwrap().0, attr::DELAY_DIST);
        assert_eq!(a.last().unwrap().1.len(), 2 * dist::TABLE_LEN);
    }

    #[test]
    fn reorder_without_gap_gets_gap_one() {
        let imp = LinkImpairment::new()
            .with_latency(Duration::from_millis(10))
            .with_reorder(25.0);
        let o = options(&imp, 1000);
        assert_eq!(&o[12..16], &1u32.to_ne_bytes());
        let with_gap = options(&imp.clone().with_gap(5), 1000);
        assert_eq!(&with_gap[12..16], &5u32.to_ne_bytes());
    }

    #[test]
    fn duplicate_correlation_alone_is_sent() {
        let imp = LinkImpairment::new()
            .with_duplicate(5.0)
            .with_duplicate_correlation(20.0);
        let a = attrs(&options(&imp, 1000));
        assert_eq!(a[0].0, attr::CORR);
        assert_eq!(&a[0].1[8..12], &percent(20.0).to_ne_bytes());
    }

    #[test]
    fn gilbert_elliott_inverts_h() {
        let imp = LinkImpairment::new().with_loss_model(LossModel::GilbertElliott {
            p: Percent(1.0),
            r: Percent(10.0),
            bad_loss: Percent(100.0),
            good_loss: Percent(0.0),
        });
        let a = attrs(&options(&imp, 1000));
        assert_eq!(a[0].0, attr::LOSS | NLA_F_NESTED);
        let inner: Vec<_> = nla::iter(&a[0].1).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(inner[0].0, attr::LOSS_GE);
        assert_eq!(&inner[0].1[8..12], &0u32.to_ne_bytes(), "h = 1 - 100%");
    }

    #[test]
    fn rate64_precedes_rate() {
        let imp = LinkImpairment::new().with_netem_rate(Rate::gbit(50));
        let a = attrs(&options(&imp, 1000));
        assert_eq!(
            a[0],
            (attr::RATE64, 6_250_000_000u64.to_ne_bytes().to_vec())
        );
        assert_eq!(a[1].0, attr::RATE);
        assert_eq!(&a[1].1[..4], &u32::MAX.to_ne_bytes());
    }

    #[test]
    fn change_resets_what_the_kernel_would_keep() {
        let old = LinkImpairment::new()
            .with_latency(Duration::from_millis(10))
            .with_jitter(Duration::from_millis(2))
            .with_distribution(Distribution::Pareto)
            .with_corrupt(1.0)
            .with_netem_rate(Rate::mbit(5));
        let new = LinkImpairment::new()
            .with_latency(Duration::from_millis(20))
            .with_jitter(Duration::from_millis(1));
        let a = attrs(&change_options(&new, 1000, &old));
        let k: Vec<u16> = a.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            k,
            [
                attr::LATENCY64,
                attr::JITTER64,
                attr::CORR,
                attr::REORDER,
                attr::CORRUPT,
                attr::RATE,
                attr::DELAY_DIST
            ]
        );
        assert!(a[2..6].iter().all(|(_, v)| v.iter().all(|&b| b == 0)));
        assert_eq!(a[6].1, dist::table_bytes(&dist::uniform()));
        // Without a previous table nothing is sent for the uniform jitter.
        let plain = change_options(&new, 1000, &LinkImpairment::new());
        assert_eq!(kinds(&plain).last(), Some(&attr::RATE));
    }

    #[test]
    fn seed_comes_back_from_a_dump() {
        let imp = LinkImpairment::new().with_loss(5.0);
        assert_eq!(dumped_seed(&options(&imp, 1000)), None);
        let seeded = options(&imp.clone().with_seed(0x0123_4567_89ab_cdef), 1000);
        assert_eq!(dumped_seed(&seeded), Some(0x0123_4567_89ab_cdef));
        // The kernel may pad before the u64 (TCA_NETEM_PAD, type 12, empty).
        let mut padded = options(&imp, 1000);
        nla::put(&mut padded, 12, &[]);
        nla::put_u64(&mut padded, attr::PRNG_SEED, 9);
        assert_eq!(dumped_seed(&padded), Some(9));
        assert_eq!(dumped_seed(&[0; 10]), None, "shorter than the struct");
    }

    #[test]
    fn auto_limit_is_twice_the_bdp() {
        let lan = LinkImpairment::new();
        assert_eq!(auto_limit(&lan), MIN_AUTO_LIMIT);
        // 100 Mbit/s (12.5 MB/s) x 1 s = 12.5 MB, plus the shaper's queue (50 ms at
        // 12.5 MB/s, 625 kB, and its 10 ms burst, 125 kB): 13.25 MB = 8834 packets, x2.
        let slow = LinkImpairment::new()
            .with_latency(Duration::from_secs(1))
            .with_rate(Rate::mbit(100));
        assert_eq!(auto_limit(&slow), 17_668);
        // netem's own rate counts too, the smaller wins for the path: 1.25 MB + 750 kB.
        let both = slow.clone().with_netem_rate(Rate::mbit(10));
        assert_eq!(auto_limit(&both), 2668);
        // netem's rate alone: no shaper queue. 10 Mbit/s x 2 s = 2.5 MB = 1667, x2.
        let netem_only = LinkImpairment::new()
            .with_latency(Duration::from_secs(2))
            .with_netem_rate(Rate::mbit(10));
        assert_eq!(auto_limit(&netem_only), 3334);
        // Unshaped: the assumed 10 Gbit/s over 100 ms.
        let wan = LinkImpairment::new().with_latency(Duration::from_millis(100));
        assert_eq!(auto_limit(&wan), 166_668);
        assert_eq!(effective_limit(&wan.clone().with_limit(10)), 10);
        assert_eq!(effective_limit(&wan), 166_668);
    }
}
