//! What a link does to the packets that cross it.
//!
//! [`LinkImpairment`] keeps the public fields (and units) of the seed API, so struct
//! literals such as `LinkImpairment { latency: 100_000, loss: 1.0, ..Default::default() }`
//! keep compiling, and adds typed builders ([`Duration`], [`Percent`], [`Rate`]) for
//! everything netem and the shapers can do.
//!
//! Every value is checked by [`LinkImpairment::validate`] before anything reaches the
//! kernel; a refusal is an [`Error::InvalidImpairment`] that names the field, the value
//! and the rule.

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

/// The shape of the delay variation added by `jitter`.
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
    /// netem's "paretonormal": a quarter Pareto, three quarters normal.
    ParetoNormal,
}

/// A loss model with state, for bursty loss (netem's `loss gemodel` / `loss state`).
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

/// Network conditions applied to one direction of one link.
///
/// The first fields are the seed API's, with its units: microseconds for `latency` and
/// `jitter`, percent for `loss` and `duplicate`, Mbit/s for `bandwidth_mbit_s`. The
/// typed builders (`with_*`) say the same with [`Duration`], [`Percent`] and [`Rate`].
///
/// ```
/// use linkem::tc::impairment::{Distribution, LinkImpairment, Rate};
/// use std::time::Duration;
///
/// let wan = LinkImpairment::default()
///     .with_latency(Duration::from_millis(40))
///     .with_jitter(Duration::from_millis(5))
///     .with_distribution(Distribution::Normal)
///     .with_loss(0.5)
///     .with_rate(Rate::mbit(50));
/// assert!(wan.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkImpairment {
    /// One-way delay added to every packet, in microseconds.
    pub latency: u32,
    /// Delay variation, in microseconds (see [`LinkImpairment::jitter_distribution`]).
    pub jitter: u32,
    /// Random loss, in percent.
    pub loss: f64,
    /// Random duplication, in percent.
    pub duplicate: f64,
    /// Bandwidth limit in Mbit/s (10^6 bits per second), by a token-bucket shaper.
    pub bandwidth_mbit_s: Option<f64>,
    /// The shaper's bucket size in KiB; `None` picks one from the rate.
    pub burst_kib: Option<u32>,
    /// How long a packet may wait in the shaper's queue before it is dropped; `None`
    /// picks a default (see the crate docs).
    pub queue_latency: Option<Duration>,
    /// netem's queue length in packets; `None` sizes it from bandwidth x delay so a fast,
    /// long link does not drop on queue overflow (tc's default of 1000 does).
    pub limit: Option<u32>,
    /// The shape of the jitter.
    pub jitter_distribution: Distribution,
    /// Correlation of successive delays, in percent.
    pub latency_correlation: f64,
    /// Correlation of successive loss decisions, in percent.
    pub loss_correlation: f64,
    /// A loss model with state; replaces the random `loss` (which must then be 0).
    pub loss_model: Option<LossModel>,
    /// Correlation of successive duplication decisions, in percent.
    pub duplicate_correlation: f64,
    /// Single-bit corruption, in percent of packets.
    pub corrupt: f64,
    /// Correlation of successive corruption decisions, in percent.
    pub corrupt_correlation: f64,
    /// Reordering: this percentage of packets is sent at once, ahead of delayed ones.
    /// Needs a `latency`.
    pub reorder: f64,
    /// Correlation of successive reordering decisions, in percent.
    pub reorder_correlation: f64,
    /// Reorder only every `gap`-th packet (netem's `gap`); 0 means no gap.
    pub gap: u32,
    /// netem's own serialization rate (`tc ... netem rate`), instead of or beside the
    /// token-bucket shaper.
    pub netem_rate: Option<Rate>,
    /// Seed of netem's random generator, for repeatable runs (TCA_NETEM_PRNG_SEED; older
    /// kernels ignore it and draw from their own generator).
    pub seed: Option<u64>,
}

/// The largest delay accepted. The seed's fields hold microseconds in a `u32` (71
/// minutes at most); an hour is far beyond anything a test needs, and longer builder
/// values saturate above it so they are refused rather than truncated.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The largest rate accepted: HTB and TBF carry rates as 64-bit bytes per second.
pub const MAX_RATE: Rate = Rate::gbit(1_000_000);

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
    /// Bandwidth limit by the token-bucket shaper.
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
    /// netem's own serialization rate.
    pub fn with_netem_rate(mut self, rate: Rate) -> Self {
        self.netem_rate = Some(rate);
        self
    }
    /// Seed of netem's random generator.
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

    /// True when the impairment needs the netem qdisc (everything but the shaper).
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
        let percents = [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
            ("reorder", self.reorder),
            ("latency_correlation", self.latency_correlation),
            ("loss_correlation", self.loss_correlation),
            ("duplicate_correlation", self.duplicate_correlation),
            ("corrupt_correlation", self.corrupt_correlation),
            ("reorder_correlation", self.reorder_correlation),
        ];
        for (field, value) in percents {
            check_percent(field, value)?;
        }
        if let Some(model) = &self.loss_model {
            let fields: Vec<(&'static str, Percent)> = match *model {
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
            };
            for (field, value) in fields {
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
    for (name, value) in [
        ("loss", imp.loss),
        ("duplicate", imp.duplicate),
        ("corrupt", imp.corrupt),
        ("reorder", imp.reorder),
    ] {
        if value > 0.0 {
            parts.push(format!("{name} {value}%"));
        }
    }
    if let Some(model) = &imp.loss_model {
        parts.push(format!("loss model {model:?}"));
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
}
