//! A link's random stream, and netem's correlated draws on top of it.
//!
//! The stream is ChaCha8 (`chacha20::ChaCha8Rng`, RustCrypto): a counter-based generator
//! whose output for a given seed is fixed by its specification and checked against
//! known-answer tests, on every platform and version, so a seed printed by one run
//! replays the same draws in another. Its cost (about a nanosecond per `u32`, state of a
//! few hundred bytes) is small next to what a packet costs the datapath. The kernel's
//! netem draws from `prandom_u32_state` (a Tausworthe generator) instead: the same seed
//! gives different fates on the two backends, the same *statistics*.

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha8Rng;

/// One link's random stream.
#[derive(Debug)]
pub(crate) struct Stream(ChaCha8Rng);

impl Stream {
    /// The stream of `seed` (expanded to ChaCha's key by `SeedableRng::seed_from_u64`,
    /// which rand_core documents as value-stable).
    pub(crate) fn new(seed: u64) -> Self {
        Stream(ChaCha8Rng::seed_from_u64(seed))
    }

    /// See [`super::link_seed`].
    pub(crate) fn for_link(network_seed: u64, source: usize, destination: usize) -> u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(network_seed);
        rng.set_stream(((source as u64) << 32) ^ destination as u64);
        rng.next_u64()
    }

    /// A uniform `u32`: netem's `prandom_u32_state()`.
    pub(crate) fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A uniform integer in `0..n` (`n > 0`), netem's `get_random_u32_below`. The
    /// widening multiply of a 64-bit draw has a bias below `n / 2^64`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// netem's `struct crndstate`: a correlation and the last value drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Correlated {
    /// The correlation scaled to `u32` (netem's `rho`, [`crate::tc::netem::percent`]).
    rho: u32,
    /// The previous correlated value.
    last: u32,
}

impl Correlated {
    /// netem's `init_crandom`: the kernel takes `last` from `get_random_u32()`, outside
    /// the seeded generator; here it comes from the link's stream, so it replays too.
    pub(crate) fn new(correlation_percent: f64, stream: &mut Stream) -> Self {
        Correlated {
            rho: crate::tc::netem::percent(correlation_percent),
            last: stream.u32(),
        }
    }

    /// netem's `get_crandom`: with correlation `rho`, the weighted mean
    /// `(value * (2^32 - (rho + 1)) + last * (rho + 1)) >> 32` of a fresh draw and the
    /// previous result. This is the formula of every kernel since 2.6 up to 6.x
    /// (checked in the 6.7+ source with `prandom_u32_state`); it shrinks the spread of
    /// the values toward the middle, so a correlated probability is not the configured
    /// one (netem's documented quirk, kept so both backends agree).
    pub(crate) fn next(&mut self, stream: &mut Stream) -> u32 {
        let value = u64::from(stream.u32());
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

    /// netem's `p && p >= get_crandom(state)`: an event of probability `p` (scaled to
    /// `u32`). No draw when `p` is 0, as in netem.
    pub(crate) fn hit(&mut self, p: u32, stream: &mut Stream) -> bool {
        p != 0 && p >= self.next(stream)
    }
}
