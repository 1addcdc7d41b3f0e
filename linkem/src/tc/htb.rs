//! HTB: the root qdisc that sorts a peer's traffic into one class per destination.
//!
//! The qdisc's options are `TCA_HTB_INIT` = `struct tc_htb_glob` (version 3, r2q 10,
//! the default class's minor, debug 0, direct_pkts 0), nested in `TCA_OPTIONS`; tc sends
//! `TCA_HTB_DIRECT_QLEN` only when asked, and so does linkem (never).
//!
//! A class's options are, in tc's order: `TCA_HTB_RATE64` and `TCA_HTB_CEIL64` (only
//! from 2^32 bytes/s on), `TCA_HTB_PARMS` = `struct tc_htb_opt` (44 bytes: rate and ceil
//! rate specs, buffer and cbuffer in psched ticks, quantum, level, prio), and the rate
//! and ceil tables `TCA_HTB_RTAB` / `TCA_HTB_CTAB` (256 `u32` each) computed as
//! `tc_calc_rtable` does, from the spec's 32-bit rate (so `u32::MAX` bytes/s for 64-bit
//! rates). The kernel only looks at the tables to learn the link layer when the spec
//! says "unaware"; linkem, like tc, says Ethernet, but sends them for byte equality.
//!
//! Defaults follow tc: ceil = rate; burst = `rate / HZ + mtu` bytes with HZ from
//! `/proc/net/psched` (10^9 today, so about one MTU) and mtu 1600; quantum 0 lets the
//! kernel derive it as rate / r2q (and warn when that exceeds 200000 bytes).

use rtnetlink::packet_route::tc::{TcHandle, TcMessage};

use crate::impairment::Rate;
use crate::tc::nla;
use crate::tc::psched::{needs_rate64, table_bytes, Psched, RateSpec};

/// The qdisc kind.
pub const KIND: &str = "htb";

/// `struct tc_htb_glob`'s version tc sends.
pub const VERSION: u32 = 3;
/// tc's default rate-to-quantum divisor.
pub const RATE2QUANTUM: u32 = 10;
/// tc's default MTU for the rate tables and burst.
pub const DEFAULT_MTU: u32 = 1600;

/// The rate of classes that are not meant to limit: 1 Tbit/s.
///
/// Every HTB class needs a rate and a ceil, and HTB throttles a class that exceeds them
/// even when nothing else competes. linkem's classes only sort traffic (shaping is TBF's
/// job), so their rate must be beyond anything the emulated link can carry: a veth pair
/// moves some tens of Gbit/s even with 64 KiB GSO packets, so 1 Tbit/s is never reached
/// while the psched arithmetic stays exact (125 * 10^9 bytes/s, a 64-bit rate).
pub const UNLIMITED: Rate = Rate::gbit(1000);
/// The burst of an unlimited class: 1 ms at [`UNLIMITED`] (125 MB, 15625 ticks), so a
/// GSO burst never leaves the class in debt and waiting for an hrtimer.
pub const UNLIMITED_BURST: u32 = 125_000_000;
/// The quantum of unlimited classes. Left at 0 the kernel would compute rate / r2q =
/// 12.5 GB, clamp it to 200000 and log a warning for every class; 64 KiB lets each
/// destination send one GSO packet per round.
pub const UNLIMITED_QUANTUM: u32 = 65536;

/// `TCA_HTB_*` attribute types.
pub mod attr {
    /// `struct tc_htb_opt`.
    pub const PARMS: u16 = 1;
    /// `struct tc_htb_glob`.
    pub const INIT: u16 = 2;
    /// Ceil rate table.
    pub const CTAB: u16 = 3;
    /// Rate table.
    pub const RTAB: u16 = 4;
    /// Direct queue length.
    pub const DIRECT_QLEN: u16 = 5;
    /// `u64` bytes/s.
    pub const RATE64: u16 = 6;
    /// `u64` bytes/s.
    pub const CEIL64: u16 = 7;
}

/// The `TCA_OPTIONS` payload of an HTB qdisc whose unclassified traffic goes to class
/// `<handle>:<default_minor>`.
pub fn qdisc_options(default_minor: u16) -> Vec<u8> {
    let glob: Vec<u8> = [VERSION, RATE2QUANTUM, u32::from(default_minor), 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let mut out = Vec::new();
    nla::put(&mut out, attr::INIT, &glob);
    out
}

/// The message (for `RTM_NEWQDISC`) of an HTB qdisc.
pub fn qdisc(ifindex: i32, handle: TcHandle, parent: TcHandle, default_minor: u16) -> TcMessage {
    crate::tc::qdisc_message(ifindex, handle, parent, KIND, qdisc_options(default_minor))
}

/// An HTB class's parameters, with tc's defaults for what is left `None`/0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtbClass {
    /// Guaranteed rate (must not be zero).
    pub rate: Rate,
    /// Upper rate; `None` = `rate`.
    pub ceil: Option<Rate>,
    /// Bytes that may be sent at once at `rate`; `None` = rate / HZ + mtu.
    pub burst: Option<u32>,
    /// Bytes that may be sent at once at `ceil`; `None` = ceil / HZ + mtu.
    pub cburst: Option<u32>,
    /// Bytes a class sends per round; 0 = rate / r2q (kernel).
    pub quantum: u32,
    /// Priority (0 is served first).
    pub prio: u32,
    /// Largest packet for the rate tables and the default bursts.
    pub mtu: u32,
}

impl HtbClass {
    /// A class with this rate and tc's defaults for everything else.
    pub fn new(rate: Rate) -> Self {
        HtbClass {
            rate,
            ceil: None,
            burst: None,
            cburst: None,
            quantum: 0,
            prio: 0,
            mtu: DEFAULT_MTU,
        }
    }

    /// A class that never limits (see [`UNLIMITED`]).
    pub fn unlimited() -> Self {
        HtbClass {
            burst: Some(UNLIMITED_BURST),
            cburst: Some(UNLIMITED_BURST),
            quantum: UNLIMITED_QUANTUM,
            ..HtbClass::new(UNLIMITED)
        }
    }
}

/// The `TCA_OPTIONS` payload of an HTB class.
pub fn class_options(class: &HtbClass, psched: &Psched) -> Vec<u8> {
    let rate64 = class.rate.as_bytes_per_sec();
    let ceil64 = class.ceil.unwrap_or(class.rate).as_bytes_per_sec();
    let hz = u64::from(psched.hz());
    // tc adds in u64 and stores in an unsigned int.
    let default_burst = |rate: u64| (rate / hz + u64::from(class.mtu)) as u32;
    let burst = class.burst.unwrap_or_else(|| default_burst(rate64));
    let cburst = class.cburst.unwrap_or_else(|| default_burst(ceil64));

    let (rate_spec, rtab) = RateSpec::with_table(psched, rate64, class.mtu);
    let (ceil_spec, ctab) = RateSpec::with_table(psched, ceil64, class.mtu);

    // struct tc_htb_opt. Unlike TBF, HTB's buffers are computed from the 64-bit rates.
    let mut parms = Vec::with_capacity(44);
    rate_spec.write(&mut parms);
    ceil_spec.write(&mut parms);
    for v in [
        psched.xmittime(rate64, burst),
        psched.xmittime(ceil64, cburst),
        class.quantum,
        0, // level: the kernel computes it
        class.prio,
    ] {
        parms.extend_from_slice(&v.to_ne_bytes());
    }

    let mut out = Vec::new();
    if needs_rate64(rate64) {
        nla::put_u64(&mut out, attr::RATE64, rate64);
    }
    if needs_rate64(ceil64) {
        nla::put_u64(&mut out, attr::CEIL64, ceil64);
    }
    nla::put(&mut out, attr::PARMS, &parms);
    nla::put(&mut out, attr::RTAB, &table_bytes(&rtab));
    nla::put(&mut out, attr::CTAB, &table_bytes(&ctab));
    out
}

/// The message (for `RTM_NEWTCLASS`) of HTB class `classid` under `parent`.
pub fn class(
    ifindex: i32,
    classid: TcHandle,
    parent: TcHandle,
    params: &HtbClass,
    psched: &Psched,
) -> TcMessage {
    crate::tc::class_message(
        ifindex,
        classid,
        parent,
        KIND,
        class_options(params, psched),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parms(payload: &[u8]) -> Vec<u32> {
        let (_, p) = nla::iter(payload).find(|(k, _)| *k == attr::PARMS).unwrap();
        assert_eq!(p.len(), 44);
        p[24..]
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn glob() {
        let o = qdisc_options(1);
        assert_eq!(&o[..4], &[24, 0, attr::INIT as u8, 0]);
        assert_eq!(
            &o[4..],
            &[3, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn defaults_follow_tc() {
        // 10 Mbit/s: burst = 1250000 / 10^9 + 1600 = 1600 bytes = 20000 ticks.
        let o = class_options(&HtbClass::new(Rate::mbit(10)), &Psched::MODERN);
        assert_eq!(parms(&o), [20000, 20000, 0, 0, 0]);
        let kinds: Vec<u16> = nla::iter(&o).map(|(k, _)| k).collect();
        assert_eq!(kinds, [attr::PARMS, attr::RTAB, attr::CTAB]);
    }

    #[test]
    fn rates_beyond_32_bits() {
        let o = class_options(&HtbClass::unlimited(), &Psched::MODERN);
        let a: Vec<_> = nla::iter(&o).collect();
        assert_eq!(a[0], (attr::RATE64, &125_000_000_000u64.to_ne_bytes()[..]));
        assert_eq!(a[1], (attr::CEIL64, &125_000_000_000u64.to_ne_bytes()[..]));
        let p = parms(&o);
        assert_eq!(&p[2..], &[UNLIMITED_QUANTUM, 0, 0]);
        // The spec's 32-bit rate saturates.
        assert_eq!(&a[2].1[8..12], &u32::MAX.to_ne_bytes());
    }

    #[test]
    fn ceil_only_above_32_bits() {
        let c = HtbClass {
            ceil: Some(Rate::gbit(100)),
            ..HtbClass::new(Rate::gbit(1))
        };
        let kinds: Vec<u16> = nla::iter(&class_options(&c, &Psched::MODERN))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kinds, [attr::CEIL64, attr::PARMS, attr::RTAB, attr::CTAB]);
    }
}
