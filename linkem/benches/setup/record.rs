//! Recording: what one run measured, and the statistics over runs.

use super::*;

/// The phases of one run, in the order they happened.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) phases: Vec<(&'static str, Duration)>,
}

impl Run {
    pub(crate) fn record(&mut self, phase: &'static str, took: Duration) {
        self.phases.push((phase, took));
    }

    /// Records ADD_FIRST_TENTH and ADD_LAST_TENTH from the time of each add.
    pub(crate) fn record_adds(&mut self, adds: &[Duration]) {
        if adds.len() < 10 {
            return;
        }
        let tenth = adds.len() / 10;
        let mean = |part: &[Duration]| part.iter().sum::<Duration>() / part.len() as u32;
        self.record(ADD_FIRST_TENTH, mean(&adds[..tenth]));
        self.record(ADD_LAST_TENTH, mean(&adds[adds.len() - tenth..]));
    }

    /// Records CLEANUP, and SETTLED from it.
    pub(crate) fn record_cleanup(&mut self, cleanup: Duration) {
        self.record(CLEANUP, cleanup);
        if let Some(teardown) = self.get(TEARDOWN) {
            self.record(SETTLED, teardown + cleanup);
        }
    }

    pub(crate) fn get(&self, phase: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
    }

    /// Adds TOTAL, the part of a run a test waits for.
    pub(crate) fn finish(mut self) -> Run {
        let total = [CREATE, ADD, TEARDOWN]
            .iter()
            .filter_map(|p| self.get(p))
            .sum();
        self.record(TOTAL, total);
        self
    }
}

/// Samples by (peer count, implementation, phase).
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) samples: BTreeMap<(usize, &'static str, &'static str), Vec<Duration>>,
    pub(crate) runs: BTreeMap<usize, usize>,
    /// Runs whose kernel cleanup was not seen (no sample recorded).
    pub(crate) cleanup_unseen: usize,
}

impl Results {
    pub(crate) fn add(&mut self, n: usize, implementation: &'static str, run: &Run) {
        for (phase, took) in &run.phases {
            self.samples
                .entry((n, implementation, phase))
                .or_default()
                .push(*took);
        }
    }

    pub(crate) fn stats(&self, n: usize, implementation: &str, phase: &str) -> Option<Stats> {
        let samples = self
            .samples
            .iter()
            .find(|((k, i, p), _)| *k == n && *i == implementation && *p == phase)?;
        Stats::of(samples.1)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) median: Duration,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl Stats {
    pub(crate) fn of(samples: &[Duration]) -> Option<Stats> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let len = sorted.len();
        let median = match len {
            0 => return None,
            _ if len % 2 == 1 => sorted[len / 2],
            _ => (sorted[len / 2 - 1] + sorted[len / 2]) / 2,
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[len - 1],
        })
    }

    pub(crate) fn per(self, count: usize) -> Stats {
        let count = count.max(1) as u32;
        Stats {
            median: self.median / count,
            min: self.min / count,
            max: self.max / count,
        }
    }
}
