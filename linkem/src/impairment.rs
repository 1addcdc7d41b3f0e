//! What a link does to the packets that cross it.
//!
//! [`LinkImpairment`] keeps the public fields (and units) of the seed API, so struct
//! literals such as `LinkImpairment { latency: 100_000, loss: 1.0, ..Default::default() }`
//! keep compiling, and adds typed builders ([`Duration`], [`Percent`], [`Rate`]) for
//! everything netem and the shapers can do.
//!
//! Every value is checked by [`LinkImpairment::validate`] before anything reaches the
//! kernel or the engine; a refusal is an [`Error::InvalidImpairment`] that names the
//! field, the value and the rule. The seed's path `linkem::tc::impairment` re-exports
//! this module.
//!
//! # One meaning, two backends
//!
//! The model does not depend on how a link is realised. The kernel backend turns it into
//! a netem qdisc with a TBF shaper under it, in the link's class of the source peer's
//! HTB tree (what the README's "Impairments and the tree they build" draws); the
//! userspace backend runs the same two stages per wire packet, with the algorithms of
//! `net/sched/sch_netem.c` and `sch_tbf.c` and the very numbers linkem would send to
//! the kernel. In tc's words (for the link to destination slot `x`; see each field):
//!
//! | field | kernel backend (tc equivalent) |
//! |---|---|
//! | `latency`, `jitter`, `jitter_distribution`, `latency_correlation` | `netem delay 100ms 10ms 25% distribution normal` |
//! | `loss`, `loss_correlation` | `netem loss 1% 25%` |
//! | `loss_model` | `netem loss gemodel p r 1-h 1-k` / `netem loss state p13 p31 p32 p23 p14` |
//! | `duplicate`, `duplicate_correlation` | `netem duplicate 2% 25%` (on an IFB device of its own) |
//! | `corrupt`, `corrupt_correlation` | `netem corrupt 0.1% 25%` |
//! | `reorder`, `reorder_correlation`, `gap` | `netem delay 10ms reorder 25% 50% gap 5` |
//! | `limit` | `netem limit 1000` (default: sized from bandwidth × delay) |
//! | `netem_rate` | `netem rate 1mbit` |
//! | `bandwidth_mbit_s`, `burst_kib`, `queue_latency` | `tbf rate 10mbit burst 12500 latency 50ms` (under the netem) |
//! | `seed` | `TCA_NETEM_PRNG_SEED` (no tc option) |
//!
//! Where the two cannot mean exactly the same, the field says so. In short:
//!
//! - **Random streams differ.** The userspace backend draws from a ChaCha8 stream per
//!   link, the kernel from its own generator: a seed replays the same fates on every
//!   run of one backend, not across backends (see [`LinkImpairment::seed`]).
//! - **netem's correlation is kept, quirk included**: 20 % loss with 50 % correlation
//!   loses about 2.9 % on both backends (see [`LinkImpairment::loss_correlation`]).
//! - **Jitter with a shaper**: the userspace shaper is charged in arrival order, the
//!   kernel's in departure order (see [`LinkImpairment::jitter`]).
//! - **`gap` without `reorder`** reorders nothing on the userspace backend (see
//!   [`LinkImpairment::gap`]).
//! - **Changes**: both restart netem's gap counter, loss-model state and correlation
//!   memories; the kernel also reseeds netem and refills a changed TBF's bucket, the
//!   userspace backend keeps its stream and its tokens.
//! - **Timing**: the userspace backend schedules departures to the nanosecond on
//!   CLOCK_MONOTONIC; the kernel sends when its qdisc watchdog fires.
//! - **Counters**: the userspace backend counts every link and every cause
//!   ([`FateCounts`](crate::network::FateCounts)); the kernel's qdiscs count totals.

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// A probability in percent, `0.0..=100.0`.
///
/// `Percent::from(1.0)` is one percent; [`Percent::from_fraction`] takes `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    /// Zero percent.
    pub const ZERO: Percent = Percent(0.0);
    /// One hundred percent.
    pub const HUNDRED: Percent = Percent(100.0);

    /// A percentage (`1.0` is one percent).
    pub const fn new(percent: f64) -> Self {
        Percent(percent)
    }

    /// A fraction (`0.01` is one percent).
    pub fn from_fraction(fraction: f64) -> Self {
        Percent(fraction * 100.0)
    }

    /// The value in percent.
    pub const fn get(self) -> f64 {
        self.0
    }

    /// The value as a fraction of one.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl From<f64> for Percent {
    fn from(percent: f64) -> Self {
        Percent(percent)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A data rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

impl Rate {
    /// A rate in bits per second.
    pub const fn bits_per_sec(bits: u64) -> Self {
        Rate(bits)
    }
    /// A rate in kilobits (10^3 bits) per second.
    pub const fn kbit(kbit: u64) -> Self {
        Rate(kbit * 1_000)
    }
    /// A rate in megabits (10^6 bits) per second.
    pub const fn mbit(mbit: u64) -> Self {
        Rate(mbit * 1_000_000)
    }
    /// A rate in gigabits (10^9 bits) per second.
    pub const fn gbit(gbit: u64) -> Self {
        Rate(gbit * 1_000_000_000)
    }
    /// A fractional rate in megabits per second (the seed's `bandwidth_mbit_s` unit).
    ///
    /// Negative and non-finite values saturate to zero, which validation refuses.
    pub fn from_mbit_f64(mbit: f64) -> Self {
        if mbit.is_finite() && mbit > 0.0 {
            Rate((mbit * 1e6).round() as u64)
        } else {
            Rate(0)
        }
    }
    /// Bits per second.
    pub const fn as_bits_per_sec(self) -> u64 {
        self.0
    }
    /// Bytes per second (rounded down), the unit tc structures use.
    pub const fn as_bytes_per_sec(self) -> u64 {
        self.0 / 8
    }
    /// Megabits per second.
    pub fn as_mbit_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1_000_000_000 && b.is_multiple_of(1_000_000) {
            write!(f, "{}gbit", b as f64 / 1e9)
        } else if b >= 1_000_000 && b.is_multiple_of(1_000) {
            write!(f, "{}mbit", b as f64 / 1e6)
        } else if b >= 1_000 {
            write!(f, "{}kbit", b as f64 / 1e3)
        } else {
            write!(f, "{b}bit")
        }
    }
}

/// The shape of the delay variation added by `jitter` (`tc ... netem delay 100ms 10ms
/// distribution normal`).
///
/// Both backends draw a jittered delay as netem's `tabledist()` does, from the same
/// tables (computed by linkem with iproute2's generators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// Uniform in `latency ± jitter` (netem's behaviour without a table).
    #[default]
    Uniform,
    /// Normal, with `jitter` as the standard deviation.
    Normal,
    /// Pareto (heavy tail), with `jitter` as the scale.
    Pareto,
    /// netem's "paretonormal": a quarter normal, three quarters Pareto (iproute2's
    /// `paretonormal.c` averages `(normal + 3 * pareto) / 4`).
    ParetoNormal,
}

/// A loss model with state, for bursty loss (netem's `loss gemodel` / `loss state`).
///
/// Both backends run netem's generators (`loss_gilb_ell()`, `loss_4state()`) and start
/// in the good state after every change.
///
/// ```
/// use linkem::impairment::{LinkImpairment, LossModel, Percent};
///
/// // Bursts: 1 % chance to enter the bad state, 30 % to leave it, everything lost there.
/// // tc: netem loss gemodel 1% 30% 100% 0%
/// let bursty = LinkImpairment::new().with_loss_model(LossModel::GilbertElliott {
///     p: Percent(1.0),
///     r: Percent(30.0),
///     bad_loss: Percent(100.0),
///     good_loss: Percent(0.0),
/// });
/// assert!(bursty.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LossModel {
    /// The Gilbert-Elliott model: a good and a bad state.
    ///
    /// The parameters are the same as `tc ... loss gemodel p r 1-h 1-k`.
    GilbertElliott {
        /// Probability of moving from the good to the bad state.
        p: Percent,
        /// Probability of moving from the bad to the good state.
        r: Percent,
        /// Loss probability in the bad state (tc's `1-h`).
        bad_loss: Percent,
        /// Loss probability in the good state (tc's `1-k`).
        good_loss: Percent,
    },
    /// The 4-state Markov model of netem (`tc ... loss state p13 p31 p32 p23 p14`).
    FourState {
        /// Good reception -> burst loss.
        p13: Percent,
        /// Burst loss -> good reception.
        p31: Percent,
        /// Burst loss -> good reception within a burst.
        p32: Percent,
        /// Good reception within a burst -> burst loss.
        p23: Percent,
        /// Good reception -> isolated loss.
        p14: Percent,
    },
}

impl LossModel {
    /// Every parameter, named as in [`Error::InvalidImpairment`] (`loss_model.p`), in
    /// the order of tc's command line: the one list that validation and reports use.
    pub(crate) fn params(&self) -> Vec<(&'static str, Percent)> {
        match *self {
            LossModel::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            } => vec![
                ("loss_model.p", p),
                ("loss_model.r", r),
                ("loss_model.bad_loss", bad_loss),
                ("loss_model.good_loss", good_loss),
            ],
            LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => vec![
                ("loss_model.p13", p13),
                ("loss_model.p31", p31),
                ("loss_model.p32", p32),
                ("loss_model.p23", p23),
                ("loss_model.p14", p14),
            ],
        }
    }

    /// tc's name of the model (`tc ... loss gemodel` / `loss state`).
    fn tc_name(&self) -> &'static str {
        match self {
            LossModel::GilbertElliott { .. } => "gemodel",
            LossModel::FourState { .. } => "state",
        }
    }
}

/// Network conditions applied to one direction of one link.
///
/// The first fields are the seed API's, with its units: microseconds for `latency` and
/// `jitter`, percent for `loss` and `duplicate`, Mbit/s for `bandwidth_mbit_s`. The
/// typed builders (`with_*`) say the same with [`Duration`], [`Percent`] and [`Rate`].
///
/// Each field's doc names the tc command it corresponds to on the kernel backend (what
/// linkem sends over netlink is byte for byte what that command sends), how the
/// userspace backend realises it, and where the two cannot mean exactly the same; the
/// [module docs](self) show the whole picture.
///
/// ```
/// use linkem::impairment::{Distribution, LinkImpairment, Rate};
/// use std::time::Duration;
///
/// let wan = LinkImpairment::default()
///     .with_latency(Duration::from_millis(40))
///     .with_jitter(Duration::from_millis(5))
///     .with_distribution(Distribution::Normal)
///     .with_loss(0.5)
///     .with_rate(Rate::mbit(50));
/// assert!(wan.validate().is_ok());
/// // What tc would say (for reports and logs):
/// assert_eq!(
///     linkem::impairment::summary(&wan),
///     "delay 40ms ± 5ms (Normal) loss 0.5% rate 50mbit"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkImpairment {
    /// One-way delay added to every packet, in microseconds.
    ///
    /// Kernel: `tc qdisc add dev eth0 parent 1:<x> handle <x>: netem delay 100ms`
    /// (sent as `TCA_NETEM_LATENCY64`, nanoseconds). Userspace: the packet's departure
    /// is scheduled at arrival + delay on CLOCK_MONOTONIC (a timerfd, then a short poll),
    /// to the nanosecond; the kernel sends when netem's watchdog hrtimer fires, plus the
    /// timer slack.
    pub latency: u32,
    /// Delay variation, in microseconds, shaped by
    /// [`jitter_distribution`](LinkImpairment::jitter_distribution).
    ///
    /// Kernel: `netem delay 100ms 10ms` (`TCA_NETEM_JITTER64`), uniform in
    /// `latency ± jitter` without a table, `... distribution normal` with one. Userspace:
    /// netem's `tabledist()` with the same tables. On both, packets leave in the order
    /// of their drawn times, so jitter alone reorders packets (netem's time-sorted
    /// queue), and jitter above 2.1 s (`i32::MAX` ns) is capped. With a shaper as well
    /// (and no `netem_rate`), the userspace backend charges the shaper's bucket in
    /// arrival order where the kernel's TBF sees packets in departure order: a packet
    /// that overtook an earlier one may wait for tokens the earlier one took.
    pub jitter: u32,
    /// Random loss, in percent (per wire packet).
    ///
    /// Kernel: `netem loss 1%`. Userspace: netem's draw, `p >= get_crandom()`, from the
    /// link's own random stream. A lost packet is counted as dropped by loss.
    pub loss: f64,
    /// Random duplication, in percent.
    ///
    /// Kernel: `netem duplicate 2%`, on an IFB device of the destination's own
    /// (`filter ... action mirred egress redirect dev ifb<d>`, netem at the IFB's root),
    /// because kernels with the CVE-2025-38553 check refuse a duplicating netem beside
    /// other netems on one device. Userspace: as netem, the copy passes netem again with
    /// duplication off (its own loss draw, corruption, limit, reordering and delay).
    /// A copy lost on its own pass or refused by a full queue is counted as no
    /// duplicate there (netem counts it as a drop).
    pub duplicate: f64,
    /// Bandwidth limit in Mbit/s (10^6 bits per second), by a token-bucket shaper.
    ///
    /// Kernel: `tc qdisc add dev eth0 parent <x>:1 handle <8000|x>: tbf rate 10mbit
    /// burst <burst> latency 50ms`, under the link's netem (directly under class
    /// `1:<x>` when the shaper is all there is, which needs no sch_netem). Both backends
    /// count wire bytes: the whole Ethernet frame, header included, as tc counts
    /// (`qdisc_pkt_len` on a veth), no preamble or FCS, so TCP goodput tops out at
    /// about 95 % of the rate at MTU 1500. Userspace: TBF's algorithm (a bucket of
    /// `burst` bytes filled at the rate, a byte-limited queue); a packet larger than the
    /// bucket, or one that does not fit the queue, is dropped (counted as queue full).
    /// A change keeps the bucket's tokens on the userspace backend; a changed TBF
    /// refills its bucket.
    pub bandwidth_mbit_s: Option<f64>,
    /// The shaper's bucket size in KiB (`tbf ... burst 32kb`); needs a bandwidth limit.
    ///
    /// `None` picks 10 ms at the rate, at least 4 full frames (4 × 1514 bytes): a
    /// smaller bucket refills only when the qdisc watchdog fires, which capped TCP at
    /// 89 % of 10 Mbit/s on a kernel with coarse timers. The same on both backends.
    pub burst_kib: Option<u32>,
    /// How long a packet may wait in the shaper's queue before it is dropped
    /// (`tbf ... latency 50ms`); needs a bandwidth limit.
    ///
    /// The queue holds `rate × queue_latency + burst` bytes, as tc computes it (with the
    /// latency in whole microseconds). `None` means 50 ms. The same on both backends.
    pub queue_latency: Option<Duration>,
    /// netem's queue length in packets (`netem ... limit 1000`).
    ///
    /// `None` sizes it from bandwidth × delay (the bandwidth-delay product in 1500-byte
    /// packets, doubled, at least 1000; the rate is the shaper's or netem's own, else
    /// an assumed fast veth) so a fast, long link does not drop on queue overflow, as
    /// tc's fixed default of 1000 does beyond 120 Mbit/s at 100 ms. Both backends count
    /// the packets netem still holds against it and drop the next one when it is full
    /// (counted as queue full).
    pub limit: Option<u32>,
    /// The shape of the jitter (`netem delay 100ms 10ms distribution normal`).
    ///
    /// linkem computes netem's tables in code with iproute2's generators (it reads no
    /// `/usr/lib/tc/*.dist` file) and sends them as `TCA_NETEM_DELAY_DIST`; the
    /// userspace backend draws from the same tables.
    pub jitter_distribution: Distribution,
    /// Correlation of successive delays, in percent (`netem delay 100ms 10ms 25%`).
    ///
    /// Both backends use netem's `get_crandom()` (see
    /// [`loss_correlation`](LinkImpairment::loss_correlation) for what it does to the
    /// spread).
    pub latency_correlation: f64,
    /// Correlation of successive loss decisions, in percent (`netem loss 20% 50%`,
    /// `TCA_NETEM_CORR`).
    ///
    /// This is netem's correlation, not a Markov chain with this correlation: each draw
    /// is the weighted mean of a fresh random number and the previous draw
    /// (`get_crandom()` in `net/sched/sch_netem.c`), which pulls the draws toward the
    /// middle, so the loss actually seen is far from `loss`: 20 % loss with 50 %
    /// correlation loses about 2.9 % of the packets. The userspace backend reproduces
    /// the formula, so both backends lose the same fraction; use
    /// [`loss_model`](LinkImpairment::loss_model) for bursts of a known rate.
    pub loss_correlation: f64,
    /// A loss model with state, for bursty loss; replaces the random `loss` (which must
    /// then be 0).
    ///
    /// Kernel: `netem loss gemodel p r 1-h 1-k` or `netem loss state p13 p31 p32 p23
    /// p14` (see [`LossModel`]). Userspace: netem's `loss_gilb_ell()` and
    /// `loss_4state()`, starting in the good state, as netem does after every change.
    pub loss_model: Option<LossModel>,
    /// Correlation of successive duplication decisions, in percent (`netem duplicate
    /// 5% 20%`).
    ///
    /// tc forgets to send the correlation when duplication is the only correlated
    /// setting, so the kernel never sees it; linkem sends it.
    pub duplicate_correlation: f64,
    /// Single-bit corruption, in percent of packets (`netem corrupt 0.1%`).
    ///
    /// One bit, uniform over the whole frame, is flipped after the checksum is
    /// completed (netem's `skb_checksum_help()`), so the receiver sees a bad checksum
    /// and drops the packet unless the bit hit the payload of a protocol without one.
    /// The userspace backend does the same; netem picks the bit with the unseeded
    /// `get_random_u32()`, the userspace backend from the link's stream (so it replays).
    pub corrupt: f64,
    /// Correlation of successive corruption decisions, in percent (`netem corrupt 0.1%
    /// 25%`).
    pub corrupt_correlation: f64,
    /// Reordering: this percentage of packets is sent at once, ahead of delayed ones
    /// (`netem delay 10ms reorder 25%`, sent with `gap 1` as tc does when no gap is
    /// given). Needs a `latency`.
    ///
    /// Both backends: a reordered packet skips the delay, netem's `rate` and the shaper
    /// (netem delivers its head queue first), and is counted as reordered.
    pub reorder: f64,
    /// Correlation of successive reordering decisions, in percent (`netem ... reorder
    /// 25% 50%`).
    pub reorder_correlation: f64,
    /// Reorder only every `gap`-th packet (`netem delay 10ms reorder 25% gap 5`): after
    /// `gap - 1` delayed packets the next draws against `reorder`; 0 means no gap.
    /// Needs a `latency`.
    ///
    /// A gap without `reorder` cannot mean the same on both: the userspace backend
    /// reorders nothing; the kernel's netem, created with it, reorders every `gap`-th
    /// packet (a reorder probability of 100 %, netem's compatibility rule for a gap
    /// without `TCA_NETEM_REORDER`), but after a change of the link it reorders nothing.
    /// Set `reorder` with a gap.
    pub gap: u32,
    /// netem's own serialization rate (`netem rate 1mbit`, `TCA_NETEM_RATE` and
    /// `TCA_NETEM_RATE64`), instead of or beside the token-bucket shaper.
    ///
    /// Each packet leaves `length / rate` after the later of its own delay and the last
    /// packet netem still holds: a rate without a queue limit in bytes (netem's `limit`
    /// counts packets). The same on both backends.
    pub netem_rate: Option<Rate>,
    /// Seed of the link's random stream, for repeatable runs; it wins over the
    /// network's seed ([`NetworkBuilder::seed`](crate::network::NetworkBuilder::seed),
    /// `LINKEM_SEED`).
    ///
    /// Kernel: `TCA_NETEM_PRNG_SEED` (tc has no option for it), which kernels from 6.6
    /// on honour; older ones (6.1 was measured) ignore it silently and draw from their
    /// own generator. Userspace: seeds the link's ChaCha8 stream, so the k-th packet of
    /// the link meets the same fate on every run. The same seed gives the same fates on
    /// every run of one backend, never the same fates on the other: the streams differ.
    /// A change of any other field keeps the userspace stream going, while netem reseeds
    /// on every change.
    pub seed: Option<u64>,
}

/// The largest delay accepted. The seed's fields hold microseconds in a `u32` (71
/// minutes at most); an hour is far beyond anything a test needs, and longer builder
/// values saturate above it so they are refused rather than truncated.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The largest rate accepted: HTB and TBF carry rates as 64-bit bytes per second.
pub const MAX_RATE: Rate = Rate::gbit(1_000_000);

/// One percentage field of [`LinkImpairment`] (all of them `f64` in percent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PercentField {
    /// The field's name.
    pub(crate) name: &'static str,
    /// Reads the field.
    pub(crate) get: fn(&LinkImpairment) -> f64,
    /// A correlation of successive decisions (`*_correlation`), not a probability of its
    /// own.
    pub(crate) correlation: bool,
}

/// The one list of [`LinkImpairment`]'s fields: [`FIELDS`] (every name, in declaration
/// order) and `PERCENTS` (the percentage fields, which validation, the netem encoder
/// and [`summary`] walk) come from it. The exhaustive pattern makes the compiler refuse
/// the table when a field is added to or removed from the struct without it.
macro_rules! field_table {
    (@percents [$($done:tt)*]) => { &[$($done)*] };
    (@percents [$($done:tt)*] $f:ident: percent, $($rest:tt)*) => {
        field_table!(@percents [$($done)* PercentField {
            name: stringify!($f),
            get: |imp: &LinkImpairment| imp.$f,
            correlation: false,
        },] $($rest)*)
    };
    (@percents [$($done:tt)*] $f:ident: correlation, $($rest:tt)*) => {
        field_table!(@percents [$($done)* PercentField {
            name: stringify!($f),
            get: |imp: &LinkImpairment| imp.$f,
            correlation: true,
        },] $($rest)*)
    };
    (@percents [$($done:tt)*] $f:ident: $other:ident, $($rest:tt)*) => {
        field_table!(@percents [$($done)*] $($rest)*)
    };
    ($($f:ident: $kind:ident,)*) => {
        /// Every field name of [`LinkImpairment`], in declaration order. Not a public
        /// API: `#[linkem::test]`'s keys are checked against it.
        #[doc(hidden)]
        pub const FIELDS: &[&str] = &[$(stringify!($f)),*];

        /// The percentage fields, in declaration order.
        pub(crate) const PERCENTS: &[PercentField] = field_table!(@percents [] $($f: $kind,)*);

        const _: fn(&LinkImpairment) = |LinkImpairment { $($f: _),* }| {};
    };
}

field_table! {
    latency: other,
    jitter: other,
    loss: percent,
    duplicate: percent,
    bandwidth_mbit_s: other,
    burst_kib: other,
    queue_latency: other,
    limit: other,
    jitter_distribution: other,
    latency_correlation: correlation,
    loss_correlation: correlation,
    loss_model: other,
    duplicate_correlation: correlation,
    corrupt: percent,
    corrupt_correlation: correlation,
    reorder: percent,
    reorder_correlation: correlation,
    gap: other,
    netem_rate: other,
    seed: other,
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl LinkImpairment {
    /// No impairment at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// One-way delay. Sub-microsecond parts are dropped (the seed unit is microseconds).
    pub fn with_latency(mut self, delay: Duration) -> Self {
        self.latency = us(delay);
        self
    }
    /// Delay variation, with the current [`Distribution`].
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = us(jitter);
        self
    }
    /// The shape of the jitter.
    pub fn with_distribution(mut self, distribution: Distribution) -> Self {
        self.jitter_distribution = distribution;
        self
    }
    /// Correlation of successive delays.
    pub fn with_latency_correlation(mut self, correlation: impl Into<Percent>) -> Self {
        self.latency_correlation = correlation.into().get();
        self
    }
    /// Random loss.
    pub fn with_loss(mut self, loss: impl Into<Percent>) -> Self {
        self.loss = loss.into().get();
        self
    }
    /// Correlation of successive loss decisions.
    pub fn with_loss_correlation(mut self, correlation: impl Into<Percent>) -> Self {
        self.loss_correlation = correlation.into().get();
        self
    }
    /// A loss model with state (Gilbert-Elliott or 4-state).
    pub fn with_loss_model(mut self, model: LossModel) -> Self {
        self.loss_model = Some(model);
        self
    }
    /// Random duplication.
    pub fn with_duplicate(mut self, duplicate: impl Into<Percent>) -> Self {
        self.duplicate = duplicate.into().get();
        self
    }
    /// Correlation of successive duplication decisions.
    pub fn with_duplicate_correlation(mut self, correlation: impl Into<Percent>) -> Self {
        self.duplicate_correlation = correlation.into().get();
        self
    }
    /// Single-bit corruption.
    pub fn with_corrupt(mut self, corrupt: impl Into<Percent>) -> Self {
        self.corrupt = corrupt.into().get();
        self
    }
    /// Correlation of successive corruption decisions.
    pub fn with_corrupt_correlation(mut self, correlation: impl Into<Percent>) -> Self {
        self.corrupt_correlation = correlation.into().get();
        self
    }
    /// Reordering probability (needs a latency to reorder against).
    pub fn with_reorder(mut self, reorder: impl Into<Percent>) -> Self {
        self.reorder = reorder.into().get();
        self
    }
    /// Correlation of successive reordering decisions.
    pub fn with_reorder_correlation(mut self, correlation: impl Into<Percent>) -> Self {
        self.reorder_correlation = correlation.into().get();
        self
    }
    /// Reorder only every `gap`-th packet.
    pub fn with_gap(mut self, gap: u32) -> Self {
        self.gap = gap;
        self
    }
    /// Bandwidth limit by the token-bucket shaper (see
    /// [`LinkImpairment::bandwidth_mbit_s`]).
    pub fn with_rate(mut self, rate: Rate) -> Self {
        self.bandwidth_mbit_s = Some(rate.as_mbit_f64());
        self
    }
    /// The shaper's bucket size, in bytes (rounded up to whole KiB).
    pub fn with_burst(mut self, bytes: u32) -> Self {
        self.burst_kib = Some(bytes.div_ceil(1024));
        self
    }
    /// The longest a packet may wait in the shaper's queue.
    pub fn with_queue_latency(mut self, latency: Duration) -> Self {
        self.queue_latency = Some(latency);
        self
    }
    /// netem's queue length in packets.
    pub fn with_limit(mut self, packets: u32) -> Self {
        self.limit = Some(packets);
        self
    }
    /// netem's own serialization rate (see [`LinkImpairment::netem_rate`]).
    pub fn with_netem_rate(mut self, rate: Rate) -> Self {
        self.netem_rate = Some(rate);
        self
    }
    /// Seed of the link's random stream (see [`LinkImpairment::seed`]).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The delay as a [`Duration`].
    pub fn latency_duration(&self) -> Duration {
        Duration::from_micros(self.latency.into())
    }
    /// The jitter as a [`Duration`].
    pub fn jitter_duration(&self) -> Duration {
        Duration::from_micros(self.jitter.into())
    }
    /// The shaper's rate, if any.
    pub fn rate(&self) -> Option<Rate> {
        self.bandwidth_mbit_s.map(Rate::from_mbit_f64)
    }

    /// True when nothing is configured: the link behaves like a plain wire.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// True when the impairment needs the netem qdisc (everything but the shaper) on the
    /// kernel backend; the userspace backend needs no qdisc at all.
    pub fn needs_netem(&self) -> bool {
        let shaper_only = LinkImpairment {
            bandwidth_mbit_s: self.bandwidth_mbit_s,
            burst_kib: self.burst_kib,
            queue_latency: self.queue_latency,
            ..Default::default()
        };
        *self != shaper_only
    }

    /// Checks every field; the first violation is returned as
    /// [`Error::InvalidImpairment`]. Nothing here touches the kernel.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, value: String, rule: &'static str| {
            Err(Error::InvalidImpairment { field, value, rule })
        };
        for field in PERCENTS {
            check_percent(field.name, (field.get)(self))?;
        }
        if let Some(model) = &self.loss_model {
            for (field, value) in model.params() {
                check_percent(field, value.get())?;
            }
            if self.loss != 0.0 {
                return bad(
                    "loss",
                    self.loss.to_string(),
                    "random loss and a loss model exclude each other (netem keeps one loss generator)",
                );
            }
        }
        let max_us = us(MAX_DELAY);
        if self.latency > max_us {
            return bad("latency", format!("{}us", self.latency), "at most 1h");
        }
        if self.jitter > max_us {
            return bad("jitter", format!("{}us", self.jitter), "at most 1h");
        }
        if (self.reorder > 0.0 || self.gap > 0) && self.latency == 0 {
            return bad(
                "reorder",
                self.reorder.to_string(),
                "reordering needs a latency: netem reorders by sending some packets without the delay",
            );
        }
        if let Some(mbit) = self.bandwidth_mbit_s {
            if !mbit.is_finite() || mbit <= 0.0 {
                return bad(
                    "bandwidth_mbit_s",
                    mbit.to_string(),
                    "a finite rate above 0 (leave it None for no limit)",
                );
            }
            let rate = Rate::from_mbit_f64(mbit);
            if rate.as_bytes_per_sec() == 0 {
                return bad("bandwidth_mbit_s", mbit.to_string(), "at least 8 bit/s");
            }
            if rate > MAX_RATE {
                return bad("bandwidth_mbit_s", mbit.to_string(), "at most 1000 Tbit/s");
            }
        }
        if let Some(rate) = self.netem_rate {
            if rate.as_bytes_per_sec() == 0 || rate > MAX_RATE {
                return bad(
                    "netem_rate",
                    rate.to_string(),
                    "between 8 bit/s and 1000 Tbit/s",
                );
            }
        }
        if let Some(kib) = self.burst_kib {
            if kib == 0 || kib > 4 * 1024 * 1024 {
                return bad("burst_kib", kib.to_string(), "between 1 KiB and 4 GiB");
            }
            if self.bandwidth_mbit_s.is_none() {
                return bad(
                    "burst_kib",
                    kib.to_string(),
                    "a burst needs a bandwidth limit",
                );
            }
        }
        if let Some(q) = self.queue_latency {
            if q.is_zero() || q > MAX_DELAY {
                return bad("queue_latency", format!("{q:?}"), "above 0 and at most 1h");
            }
            if self.bandwidth_mbit_s.is_none() {
                return bad(
                    "queue_latency",
                    format!("{q:?}"),
                    "a queue latency needs a bandwidth limit",
                );
            }
        }
        if self.limit == Some(0) {
            return bad(
                "limit",
                "0".into(),
                "at least 1 packet (netem drops everything with 0)",
            );
        }
        Ok(())
    }
}

/// A one-line description of an impairment, as tc would say it (`delay 100ms loss 1%
/// rate 10mbit`), for reports.
pub fn summary(imp: &LinkImpairment) -> String {
    if imp.is_none() {
        return "none".into();
    }
    let mut parts = Vec::new();
    if imp.latency > 0 || imp.jitter > 0 {
        let mut s = format!("delay {:?}", imp.latency_duration());
        if imp.jitter > 0 {
            s += &format!(
                " ± {:?} ({:?})",
                imp.jitter_duration(),
                imp.jitter_distribution
            );
        }
        parts.push(s);
    }
    for field in PERCENTS.iter().filter(|f| !f.correlation) {
        let value = (field.get)(imp);
        if value > 0.0 {
            parts.push(format!("{} {value}%", field.name));
        }
    }
    if let Some(model) = &imp.loss_model {
        let mut s = format!("loss {}", model.tc_name());
        for (name, value) in model.params() {
            s += &format!(" {} {value}", name.trim_start_matches("loss_model."));
        }
        parts.push(s);
    }
    if let Some(rate) = imp.rate() {
        parts.push(format!("rate {rate}"));
    }
    if let Some(rate) = imp.netem_rate {
        parts.push(format!("netem rate {rate}"));
    }
    if let Some(limit) = imp.limit {
        parts.push(format!("limit {limit}"));
    }
    parts.join(" ")
}

fn check_percent(field: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidImpairment {
            field,
            value: value.to_string(),
            rule: "a percentage within 0..=100",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_literal_keeps_its_units() {
        let imp = LinkImpairment {
            latency: 100_000,
            loss: 1.0,
            bandwidth_mbit_s: Some(10.0),
            ..Default::default()
        };
        assert_eq!(imp.latency_duration(), Duration::from_millis(100));
        assert_eq!(imp.rate(), Some(Rate::mbit(10)));
        assert!(imp.validate().is_ok());
        assert!(imp.needs_netem());
    }

    #[test]
    fn builders_match_fields() {
        let imp = LinkImpairment::new()
            .with_latency(Duration::from_millis(100))
            .with_loss(Percent::from_fraction(0.01))
            .with_rate(Rate::mbit(10));
        assert_eq!(imp.latency, 100_000);
        assert!((imp.loss - 1.0).abs() < 1e-12);
        assert_eq!(imp.bandwidth_mbit_s, Some(10.0));
    }

    #[test]
    fn shaper_alone_does_not_need_netem() {
        let imp = LinkImpairment::new().with_rate(Rate::mbit(5));
        assert!(!imp.needs_netem());
        assert!(!LinkImpairment::new().needs_netem());
        assert!(LinkImpairment::new().is_none());
    }

    #[test]
    fn refusals_name_field_value_and_rule() {
        let cases: Vec<(LinkImpairment, &str)> = vec![
            (
                LinkImpairment {
                    loss: 150.0,
                    ..Default::default()
                },
                "loss",
            ),
            (
                LinkImpairment {
                    loss: f64::NAN,
                    ..Default::default()
                },
                "loss",
            ),
            (
                LinkImpairment {
                    duplicate: -1.0,
                    ..Default::default()
                },
                "duplicate",
            ),
            (
                LinkImpairment {
                    corrupt: f64::INFINITY,
                    ..Default::default()
                },
                "corrupt",
            ),
            (
                LinkImpairment {
                    bandwidth_mbit_s: Some(0.0),
                    ..Default::default()
                },
                "bandwidth_mbit_s",
            ),
            (
                LinkImpairment {
                    bandwidth_mbit_s: Some(f64::NAN),
                    ..Default::default()
                },
                "bandwidth_mbit_s",
            ),
            (
                LinkImpairment {
                    latency: u32::MAX,
                    ..Default::default()
                },
                "latency",
            ),
            (
                LinkImpairment {
                    reorder: 10.0,
                    ..Default::default()
                },
                "reorder",
            ),
            (
                LinkImpairment {
                    limit: Some(0),
                    ..Default::default()
                },
                "limit",
            ),
            (
                LinkImpairment {
                    burst_kib: Some(10),
                    ..Default::default()
                },
                "burst_kib",
            ),
            (
                LinkImpairment::new().with_netem_rate(Rate::bits_per_sec(1)),
                "netem_rate",
            ),
            (
                LinkImpairment::new()
                    .with_loss(1.0)
                    .with_loss_model(LossModel::GilbertElliott {
                        p: Percent(1.0),
                        r: Percent(10.0),
                        bad_loss: Percent(100.0),
                        good_loss: Percent(0.0),
                    }),
                "loss",
            ),
            (
                LinkImpairment::new().with_loss_model(LossModel::GilbertElliott {
                    p: Percent(101.0),
                    r: Percent(10.0),
                    bad_loss: Percent(100.0),
                    good_loss: Percent(0.0),
                }),
                "loss_model.p",
            ),
        ];
        for (imp, want) in cases {
            match imp.validate() {
                Err(Error::InvalidImpairment { field, value, rule }) => {
                    assert_eq!(field, want, "{imp:?}");
                    assert!(!value.is_empty() && !rule.is_empty());
                }
                other => panic!("{imp:?}: expected a refusal of {want}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_field_table_names_every_field_once() {
        assert_eq!(FIELDS.len(), 20);
        assert_eq!(FIELDS.first(), Some(&"latency"));
        assert_eq!(FIELDS.last(), Some(&"seed"));
        let unique: std::collections::BTreeSet<_> = FIELDS.iter().collect();
        assert_eq!(unique.len(), FIELDS.len());
        let names: Vec<_> = PERCENTS.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), 9);
        assert!(names.iter().all(|n| FIELDS.contains(n)));
        let correlations = PERCENTS.iter().filter(|f| f.correlation);
        assert!(correlations
            .clone()
            .all(|f| f.name.ends_with("_correlation")));
        assert_eq!(correlations.count(), 5);
        // Each accessor reads its own field.
        for (i, field) in PERCENTS.iter().enumerate() {
            let mut imp = LinkImpairment::new();
            let value = 10.0 + i as f64;
            match field.name {
                "loss" => imp.loss = value,
                "duplicate" => imp.duplicate = value,
                "corrupt" => imp.corrupt = value,
                "reorder" => imp.reorder = value,
                "latency_correlation" => imp.latency_correlation = value,
                "loss_correlation" => imp.loss_correlation = value,
                "duplicate_correlation" => imp.duplicate_correlation = value,
                "corrupt_correlation" => imp.corrupt_correlation = value,
                "reorder_correlation" => imp.reorder_correlation = value,
                other => panic!("not a percentage field: {other}"),
            }
            assert_eq!((field.get)(&imp), value, "{}", field.name);
        }
    }

    #[test]
    fn summary_reads_like_tc() {
        let imp = LinkImpairment::new()
            .with_latency(Duration::from_millis(100))
            .with_duplicate(2.0)
            .with_loss_correlation(25.0)
            .with_loss_model(LossModel::GilbertElliott {
                p: Percent(1.0),
                r: Percent(10.0),
                bad_loss: Percent(100.0),
                good_loss: Percent(0.0),
            })
            .with_rate(Rate::mbit(10));
        assert_eq!(
            summary(&imp),
            "delay 100ms duplicate 2% loss gemodel p 1% r 10% bad_loss 100% good_loss 0% \
             rate 10mbit"
        );
        assert_eq!(summary(&LinkImpairment::new()), "none");
    }
}
