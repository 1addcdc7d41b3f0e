//! TBF: the token-bucket shaper behind a link's bandwidth limit.
//!
//! Options, nested in `TCA_OPTIONS`, in tc's order: `TCA_TBF_PARMS` = `struct
//! tc_tbf_qopt` (36 bytes: rate and peak-rate specs, limit in bytes, buffer and mtu in
//! ticks), `TCA_TBF_BURST` (the bucket in bytes), `TCA_TBF_RATE64` (from 2^32 bytes/s
//! on) and `TCA_TBF_RTAB`. No peak rate: its spec stays all zero.
//!
//! tc quirks reproduced for byte equality, harmless to the kernel:
//! - the buffer (ticks) and the rate table use the spec's 32-bit rate, i.e. `u32::MAX`
//!   bytes/s for 64-bit rates; the kernel takes the bucket from `TCA_TBF_BURST` instead
//!   (since 3.13) and the tables only for an "unaware" link layer;
//! - with a queue latency instead of a limit, `limit = rate * latency + burst` bytes,
//!   with the latency in whole microseconds, truncated.
//!
//! TBF's limit is the byte limit of its default child, a bfifo. It only holds while that
//! bfifo is TBF's child: with another qdisc grafted under TBF, `fifo_set_limit` does
//! nothing and the limit is lost. That is why linkem puts TBF *under* netem, not above
//! it (see [`crate::tc::handles`]).

use std::time::Duration;

use rtnetlink::packet_route::tc::{TcHandle, TcMessage};

use crate::impairment::{LinkImpairment, Rate};
use crate::tc::nla;
use crate::tc::psched::{needs_rate64, table_bytes, Psched, RateSpec};

/// The qdisc kind.
pub const KIND: &str = "tbf";

/// The queue latency used when the impairment gives none.
pub const DEFAULT_QUEUE_LATENCY: Duration = Duration::from_millis(50);
/// The smallest default burst: two Ethernet frames (1514 bytes each), so a full-size
/// packet always fits (the kernel warns below one MTU and drops non-GSO packets that
/// exceed the bucket).
pub const MIN_BURST: u32 = 4 * 1514;
/// The default burst is this much time at the rate (when above [`MIN_BURST`]).
///
/// 10 ms, not less: the bucket refills when the qdisc watchdog fires, and on kernels
/// whose timers are coarse (user-mode-linux, tick-based configurations) a 1 ms bucket
/// capped TCP goodput at 89% of a 10 Mbit/s rate in the kernel lane.
pub const DEFAULT_BURST_TIME: Duration = Duration::from_millis(10);

/// `TCA_TBF_*` attribute types.
pub mod attr {
    /// `struct tc_tbf_qopt`.
    pub const PARMS: u16 = 1;
    /// Rate table.
    pub const RTAB: u16 = 2;
    /// `u64` bytes/s.
    pub const RATE64: u16 = 4;
    /// `u32` bucket size in bytes.
    pub const BURST: u16 = 6;
}

/// How much TBF may queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TbfLimit {
    /// Bytes.
    Bytes(u32),
    /// The longest a packet may wait: `rate * latency + burst` bytes (tc's `latency`).
    Latency(Duration),
}

/// A token-bucket shaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Rate (must not be zero).
    pub rate: Rate,
    /// Bucket size in bytes (must not be zero).
    pub burst: u32,
    /// Queue limit.
    pub limit: TbfLimit,
}

/// [`DEFAULT_BURST_TIME`] at `rate`, at least [`MIN_BURST`].
pub fn default_burst(rate: Rate) -> u32 {
    let per_ms = rate.as_bytes_per_sec() * DEFAULT_BURST_TIME.as_micros() as u64 / 1_000_000;
    u32::try_from(per_ms).unwrap_or(u32::MAX).max(MIN_BURST)
}

impl Tbf {
    /// The shaper of an impairment, `None` when it has no bandwidth limit: its rate, its
    /// burst (`burst_kib`, else [`default_burst`]) and its queue latency
    /// (`queue_latency`, else [`DEFAULT_QUEUE_LATENCY`]).
    pub fn from_impairment(imp: &LinkImpairment) -> Option<Tbf> {
        let rate = imp.rate()?;
        let burst = match imp.burst_kib {
            Some(kib) => kib.saturating_mul(1024),
            None => default_burst(rate),
        };
        let latency = imp.queue_latency.unwrap_or(DEFAULT_QUEUE_LATENCY);
        Some(Tbf {
            rate,
            burst,
            limit: TbfLimit::Latency(latency),
        })
    }

    /// The queue limit in bytes, as tc computes it from a latency.
    pub fn limit_bytes(&self) -> u32 {
        match self.limit {
            TbfLimit::Bytes(bytes) => bytes,
            TbfLimit::Latency(latency) => {
                // tc holds the latency in an unsigned int of microseconds.
                let usec = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                let rate = self.rate.as_bytes_per_sec() as f64;
                (rate * f64::from(usec) / 1_000_000.0 + f64::from(self.burst)) as u32
            }
        }
    }
}

/// The `TCA_OPTIONS` payload of a TBF qdisc.
pub fn options(tbf: &Tbf, psched: &Psched) -> Vec<u8> {
    let rate64 = tbf.rate.as_bytes_per_sec();
    // mtu 0: tc's default, 2047 for the table's cell size; no peak rate.
    let (spec, rtab) = RateSpec::with_table(psched, rate64, 0);
    let mut parms = Vec::with_capacity(36);
    spec.write(&mut parms);
    RateSpec::default().write(&mut parms);
    for v in [
        tbf.limit_bytes(),
        psched.xmittime(u64::from(spec.rate), tbf.burst),
        0, // mtu (ticks): only with a peak rate
    ] {
        parms.extend_from_slice(&v.to_ne_bytes());
    }

    let mut out = Vec::new();
    nla::put(&mut out, attr::PARMS, &parms);
    nla::put_u32(&mut out, attr::BURST, tbf.burst);
    if needs_rate64(rate64) {
        nla::put_u64(&mut out, attr::RATE64, rate64);
    }
    nla::put(&mut out, attr::RTAB, &table_bytes(&rtab));
    out
}

/// The message (for `RTM_NEWQDISC`) of a TBF `handle` under `parent`.
pub fn qdisc(
    ifindex: i32,
    handle: TcHandle,
    parent: TcHandle,
    tbf: &Tbf,
    psched: &Psched,
) -> TcMessage {
    crate::tc::qdisc_message(ifindex, handle, parent, KIND, options(tbf, psched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_from_latency() {
        let tbf = Tbf {
            rate: Rate::mbit(10),
            burst: 32 * 1024,
            limit: TbfLimit::Latency(Duration::from_millis(50)),
        };
        // 1250000 B/s * 0.05 s + 32768 = 95268.
        assert_eq!(tbf.limit_bytes(), 95_268);
        let tbf = Tbf {
            limit: TbfLimit::Bytes(100 * 1024),
            ..tbf
        };
        assert_eq!(tbf.limit_bytes(), 102_400);
    }

    #[test]
    fn from_impairment_defaults() {
        assert_eq!(Tbf::from_impairment(&LinkImpairment::new()), None);
        let imp = LinkImpairment::new().with_rate(Rate::mbit(100));
        let tbf = Tbf::from_impairment(&imp).unwrap();
        assert_eq!(tbf.burst, 125_000, "10 ms at 100 Mbit/s");
        assert_eq!(tbf.limit, TbfLimit::Latency(DEFAULT_QUEUE_LATENCY));
        let slow = Tbf::from_impairment(&LinkImpairment::new().with_rate(Rate::kbit(64)));
        assert_eq!(slow.unwrap().burst, MIN_BURST);
        let imp = imp
            .with_burst(64 * 1024)
            .with_queue_latency(Duration::from_millis(5));
        let tbf = Tbf::from_impairment(&imp).unwrap();
        assert_eq!(tbf.burst, 65_536);
        assert_eq!(tbf.limit, TbfLimit::Latency(Duration::from_millis(5)));
    }

    #[test]
    fn layout() {
        let tbf = Tbf {
            rate: Rate::gbit(50),
            burst: 1 << 20,
            limit: TbfLimit::Bytes(1 << 24),
        };
        let o = options(&tbf, &Psched::MODERN);
        let a: Vec<_> = nla::iter(&o).collect();
        let kinds: Vec<u16> = a.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [attr::PARMS, attr::BURST, attr::RATE64, attr::RTAB]);
        assert_eq!(a[0].1.len(), 36);
        assert_eq!(&a[0].1[12..24], &[0; 12], "no peak rate");
        assert_eq!(a[1].1, (1u32 << 20).to_ne_bytes());
        assert_eq!(a[3].1.len(), 1024);
    }
}
