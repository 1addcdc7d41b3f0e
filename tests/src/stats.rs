//! Expected ranges of counts the suite measures, from the model that produces them.
//!
//! A binomial count has a closed-form interval; a count from a model with state
//! (correlated or Markov loss) does not, so its range comes from the model itself:
//! netem's algorithm, run many times here with an independent generator, gives the
//! mean and spread of the statistic, and a measurement outside mean +- 4.89 sd is a
//! failure: a correct link lands outside once in a million runs (two-sided, for the
//! near-normal counts of thousands of packets). A 99.9% interval (3.29 sd) is not
//! enough: the suite makes dozens of these checks per run, on both backends, and a soak
//! runs it twenty times, so one check in a thousand failing by chance would fail about
//! one soak in two.

/// z of a two-sided interval that a correct measurement leaves once in a million runs.
pub const Z_RARE: f64 = 4.89;

/// The interval ([`Z_RARE`]) of a binomial count of `n` trials with probability `p` (normal
/// approximation).
pub fn binomial(n: usize, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - Z_RARE * sd, mean + Z_RARE * sd)
}

/// A small generator for the simulations (splitmix64): independent of both backends'.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 32 random bits, as netem's `prandom_u32_state`.
    pub fn u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

/// A percentage scaled to netem's u32 probabilities.
pub fn scaled(percent: f64) -> u32 {
    (percent / 100.0 * f64::from(u32::MAX)).round() as u32
}

/// What a loss pattern is judged by: how many were lost, and how many losses followed
/// a loss (the burstiness a stateful model adds; random loss of the same rate has far
/// fewer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossPattern {
    /// Packets lost.
    pub lost: usize,
    /// Losses whose predecessor was lost too.
    pub after_loss: usize,
}

impl LossPattern {
    /// The pattern of `lost[k]` (true: packet k was lost).
    pub fn of(lost: &[bool]) -> LossPattern {
        LossPattern {
            lost: lost.iter().filter(|l| **l).count(),
            after_loss: lost.windows(2).filter(|w| w[0] && w[1]).count(),
        }
    }
}

/// The ranges ([`Z_RARE`]) of [`LossPattern`]'s two counts over `n` packets of the model that
/// `model` makes (a fresh model state per run, drawing from the generator it is given):
/// simulated `runs` times.
pub fn simulated_ranges<M: FnMut(&mut SplitMix) -> bool>(
    n: usize,
    runs: usize,
    mut model: impl FnMut() -> M,
) -> ((f64, f64), (f64, f64)) {
    let mut rng = SplitMix::new(0x5eed);
    let patterns: Vec<LossPattern> = (0..runs)
        .map(|_| {
            let mut step = model();
            let lost: Vec<bool> = (0..n).map(|_| step(&mut rng)).collect();
            LossPattern::of(&lost)
        })
        .collect();
    let range = |values: Vec<f64>| {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        let sd = var.sqrt();
        (mean - Z_RARE * sd, mean + Z_RARE * sd)
    };
    (
        range(patterns.iter().map(|p| p.lost as f64).collect()),
        range(patterns.iter().map(|p| p.after_loss as f64).collect()),
    )
}

/// netem's correlated draw (`get_crandom`, net/sched/sch_netem.c): each value leans
/// toward the previous one by `rho`.
#[derive(Debug, Clone, Default)]
pub struct Correlated {
    rho: u32,
    last: u32,
}

impl Correlated {
    /// A correlation of `percent`.
    pub fn new(percent: f64) -> Correlated {
        Correlated {
            rho: scaled(percent),
            last: 0,
        }
    }

    /// The next draw.
    pub fn next(&mut self, rng: &mut SplitMix) -> u32 {
        let value = u64::from(rng.u32());
        if self.rho == 0 {
            return value as u32;
        }
        let rho = u64::from(self.rho) + 1;
        let answer = ((u128::from(value) * u128::from((1u64 << 32) - rho)
            + u128::from(self.last) * u128::from(rho))
            >> 32) as u32;
        self.last = answer;
        answer
    }
}
