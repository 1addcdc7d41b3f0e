//! The model against netem's and TBF's definitions. Every statistical bound is five
//! standard errors of the estimate (binomial, or batch means where the draws are
//! correlated), around an expected value computed independently of the model: from the
//! configured probabilities, the Markov chains' stationary laws, or the distribution
//! tables themselves. The seeds are fixed, so each test gives the same answer every run.

use std::time::Duration;

use super::*;
use crate::tc::dist;
use crate::tc::impairment::{Distribution, LossModel, Percent, Rate};
use crate::tc::netem::percent;

const MS: Nanos = 1_000_000;
const SEED: u64 = 0x5eed_1234;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The probability netem gives to `p >= u32`: `(percent(p) + 1) / 2^32`.
fn scaled(p: f64) -> f64 {
    (f64::from(percent(p)) + 1.0) / 4_294_967_296.0
}

/// Feeds `n` packets of `len` bytes, one every `gap` ns from 0.
fn feed(model: &mut LinkModel, n: usize, gap: Nanos, len: u32) -> Vec<(Nanos, Verdict)> {
    (0..n as u64)
        .map(|i| {
            let now = i * gap;
            (now, model.admit(now, len))
        })
        .collect()
}

fn lost(v: &Verdict) -> bool {
    matches!(v, Verdict::Drop(DropCause::Loss))
}

fn first(v: &Verdict) -> Departure {
    match v {
        Verdict::Send { first, .. } => *first,
        Verdict::Drop(cause) => panic!("dropped ({cause:?})"),
    }
}

/// Asserts `count` successes of `n` trials fit probability `p` within five binomial
/// standard deviations.
fn assert_binomial(what: &str, count: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (count as f64 - mean).abs() <= 5.0 * sd,
        "{what}: {count} of {n}, expected {mean:.1} ± {:.1} (5 sd)",
        5.0 * sd
    );
}

/// Mean and standard error of a correlated series by batch means.
fn batch_means(xs: &[f64], batches: usize) -> (f64, f64) {
    let size = xs.len() / batches;
    let means: Vec<f64> = xs
        .chunks_exact(size)
        .map(|c| c.iter().sum::<f64>() / size as f64)
        .collect();
    let b = means.len() as f64;
    let mean = means.iter().sum::<f64>() / b;
    let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (b - 1.0);
    (mean, (var / b).sqrt())
}

fn indicators(verdicts: &[(Nanos, Verdict)]) -> Vec<f64> {
    verdicts
        .iter()
        .map(|(_, v)| if lost(v) { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn random_loss_is_binomial() {
    let imp = LinkImpairment::new().with_loss(10.0);
    let mut m = LinkModel::new(&imp, SEED);
    let n = 100_000;
    let v = feed(&mut m, n, 1_000, 100);
    let count = v.iter().filter(|(_, v)| lost(v)).count();
    assert_binomial("loss", count, n, scaled(10.0));
    // Whatever is not lost is sent at once (no delay configured).
    assert!(v.iter().all(|(now, v)| lost(v) || first(v).at == *now));
}

#[test]
fn full_loss_correlation_repeats_the_first_fate() {
    // rho = 2^32 - 1: get_crandom returns its memory forever, so every packet shares
    // the fate drawn from the initial memory.
    let imp = LinkImpairment::new()
        .with_loss(50.0)
        .with_loss_correlation(100.0);
    let mut outcomes = [0; 2];
    for seed in 0..20 {
        let mut m = LinkModel::new(&imp, seed);
        let v = feed(&mut m, 200, 1_000, 100);
        let count = v.iter().filter(|(_, v)| lost(v)).count();
        assert!(count == 0 || count == 200, "seed {seed}: {count} of 200");
        outcomes[usize::from(count == 200)] += 1;
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// The stationary loss rate and mean burst length of netem's correlated loss, from the
/// continuous chain `x' = (1 - rho) u + rho x` (`u` uniform), lost when `x' <= p`,
/// solved on a grid: an oracle that shares nothing with the model but the definition.
fn correlated_loss_oracle(p: f64, rho: f64) -> (f64, f64) {
    const M: usize = 1000;
    let w = 1.0 / M as f64;
    let mut pi = vec![w; M];
    for _ in 0..60 {
        let mut next = vec![0.0; M];
        for (i, &mass) in pi.iter().enumerate() {
            let c = (i as f64 + 0.5) * w;
            let (lo, hi) = (rho * c, rho * c + (1.0 - rho));
            let (first, last) = ((lo / w) as usize, ((hi / w) as usize).min(M - 1));
            for (j, slot) in next.iter_mut().enumerate().take(last + 1).skip(first) {
                let (a, b) = (j as f64 * w, (j + 1) as f64 * w);
                let overlap = (b.min(hi) - a.max(lo)).max(0.0);
                *slot += mass * overlap / (hi - lo);
            }
        }
        pi = next;
    }
    let below = |c: f64| ((p - rho * c) / (1.0 - rho)).clamp(0.0, 1.0);
    let (mut p_loss, mut p_both) = (0.0, 0.0);
    for (i, &mass) in pi.iter().enumerate() {
        let c = (i as f64 + 0.5) * w;
        if c <= p {
            p_loss += mass;
            p_both += mass * below(c);
        }
    }
    (p_loss, p_loss / (p_loss - p_both))
}

#[test]
fn correlated_loss_matches_netems_chain() {
    let (p, corr) = (20.0, 50.0);
    let imp = LinkImpairment::new()
        .with_loss(p)
        .with_loss_correlation(corr);
    let rho = (f64::from(percent(corr)) + 1.0) / 4_294_967_296.0;
    let (want_rate, want_burst) = correlated_loss_oracle(p / 100.0, rho);
    let mut m = LinkModel::new(&imp, SEED);
    let v = feed(&mut m, 400_000, 1_000, 100);
    let xs = indicators(&v);
    let (rate, se) = batch_means(&xs, 400);
    // The grid's own error is far below 0.002 at 1000 cells.
    assert!(
        (rate - want_rate).abs() <= 5.0 * se + 0.002,
        "loss rate {rate:.4}, chain says {want_rate:.4} (se {se:.4})"
    );
    // netem's correlation lowers the rate: the mean of two uniforms is rarely extreme.
    assert!(want_rate < 0.19, "{want_rate}");
    // Mean burst length: bursts per packet and lost packets per packet, each from the
    // same batches, via the ratio's delta-method bound.
    let starts: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if x == 1.0 && (i == 0 || xs[i - 1] == 0.0) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let (start_rate, start_se) = batch_means(&starts, 400);
    let burst = rate / start_rate;
    let burst_se = burst * ((se / rate).powi(2) + (start_se / start_rate).powi(2)).sqrt();
    assert!(
        (burst - want_burst).abs() <= 5.0 * burst_se + 0.01 * want_burst,
        "mean burst {burst:.4}, chain says {want_burst:.4} (se {burst_se:.4})"
    );
    // Uncorrelated loss at the same rate would give bursts of 1 / (1 - rate).
    assert!(want_burst > 1.0 / (1.0 - want_rate) + 0.05);
}

#[test]
fn gilbert_elliott_stationary_loss() {
    let (p, r, bad_loss, good_loss) = (5.0, 20.0, 80.0, 1.0);
    let imp = LinkImpairment::new().with_loss_model(LossModel::GilbertElliott {
        p: Percent(p),
        r: Percent(r),
        bad_loss: Percent(bad_loss),
        good_loss: Percent(good_loss),
    });
    // P(draw < a) = a / 2^32; bad-state loss is P(draw > h) with h = MAX - percent(1-h).
    let two32 = 4_294_967_296.0;
    let pg = f64::from(percent(p)) / two32;
    let pr = f64::from(percent(r)) / two32;
    let h = u32::MAX - percent(bad_loss);
    let lb = (f64::from(u32::MAX) - f64::from(h)) / two32;
    let lg = f64::from(percent(good_loss)) / two32;
    let bad = pg / (pg + pr);
    let want = (1.0 - bad) * lg + bad * lb;
    let mut m = LinkModel::new(&imp, SEED);
    let v = feed(&mut m, 300_000, 1_000, 100);
    let (rate, se) = batch_means(&indicators(&v), 300);
    assert!(
        (rate - want).abs() <= 5.0 * se,
        "GE loss {rate:.4}, stationary {want:.4} (se {se:.4})"
    );
}

#[test]
fn four_state_stationary_loss() {
    let (p13, p31, p32, p23, p14) = (2.0, 30.0, 40.0, 10.0, 1.0);
    let imp = LinkImpairment::new().with_loss_model(LossModel::FourState {
        p13: Percent(p13),
        p31: Percent(p31),
        p32: Percent(p32),
        p23: Percent(p23),
        p14: Percent(p14),
    });
    // Balance: pi4 = p14 pi1, pi3 p31 = pi1 p13, pi2 p23 = pi3 p32; loss = pi3 + pi4.
    let f = |x: f64| x / 100.0;
    let pi1 = 1.0 / (1.0 + f(p14) + f(p13) / f(p31) + f(p13) * f(p32) / (f(p31) * f(p23)));
    let want = pi1 * (f(p13) / f(p31) + f(p14));
    let mut m = LinkModel::new(&imp, SEED);
    let v = feed(&mut m, 300_000, 1_000, 100);
    let (rate, se) = batch_means(&indicators(&v), 300);
    assert!(
        (rate - want).abs() <= 5.0 * se,
        "4-state loss {rate:.4}, stationary {want:.4} (se {se:.4})"
    );
}

/// Mean, standard deviation and kurtosis of `latency + jitter * t / 8192` over a table.
fn table_moments(table: &[i16], mu: f64, sigma: f64) -> (f64, f64, f64) {
    let xs: Vec<f64> = table
        .iter()
        .map(|&t| mu + sigma * f64::from(t) / 8192.0)
        .collect();
    moments(&xs)
}

fn moments(xs: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let m2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let m4 = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
    (mean, m2.sqrt(), m4 / (m2 * m2))
}

#[test]
fn delay_follows_each_distribution() {
    let (latency, jitter) = (50 * MS, 10 * MS);
    let n = 40_000;
    for d in [
        Distribution::Uniform,
        Distribution::Normal,
        Distribution::Pareto,
        Distribution::ParetoNormal,
    ] {
        let imp = LinkImpairment::new()
            .with_latency(ms(50))
            .with_jitter(ms(10))
            .with_distribution(d);
        let mut m = LinkModel::new(&imp, SEED);
        let v = feed(&mut m, n, MS, 100);
        let delays: Vec<f64> = v
            .iter()
            .map(|(now, v)| {
                let dep = first(v);
                assert_eq!(dep.at - now, dep.delay, "{d:?}: no rate, no queueing");
                dep.delay as f64
            })
            .collect();
        let (mean, sd, _) = moments(&delays);
        let (want_mean, want_sd, kurtosis, median, below_median) = match dist::table(d) {
            None => {
                // rnd % 2 sigma + mu - sigma: integers mu - sigma ..= mu + sigma - 1.
                let lo = latency - jitter;
                let hi = latency + jitter - 1;
                assert!(delays.iter().all(|&x| x >= lo as f64 && x <= hi as f64));
                let s = (2 * jitter) as f64 / 12f64.sqrt();
                (latency as f64 - 0.5, s, 1.8, latency as f64, 0.5)
            }
            Some(table) => {
                let (m, s, k) = table_moments(table, latency as f64, jitter as f64);
                let mut sorted = table.to_vec();
                sorted.sort_unstable();
                let t_med = sorted[sorted.len() / 2];
                let below =
                    table.iter().filter(|&&t| t <= t_med).count() as f64 / table.len() as f64;
                let med = latency as f64 + jitter as f64 * f64::from(t_med) / 8192.0;
                (m, s, k, med, below)
            }
        };
        let nf = n as f64;
        // The kernel's rounding moves each draw by at most one nanosecond.
        assert!(
            (mean - want_mean).abs() <= 5.0 * want_sd / nf.sqrt() + 1.0,
            "{d:?}: mean {mean:.0}, expected {want_mean:.0}"
        );
        let sd_se = want_sd * ((kurtosis - 1.0) / (4.0 * nf)).sqrt();
        assert!(
            (sd - want_sd).abs() <= 5.0 * sd_se + 1.0,
            "{d:?}: sd {sd:.0}, expected {want_sd:.0} ± {sd_se:.0}"
        );
        // The fraction at or below the median entry's delay.
        let frac = delays.iter().filter(|&&x| x <= median + 1.0).count() as f64 / nf;
        let se = (below_median * (1.0 - below_median) / nf).sqrt();
        assert!(
            (frac - below_median).abs() <= 5.0 * se + 1.0 / 4096.0,
            "{d:?}: {frac:.4} at or below the median, expected {below_median:.4}"
        );
    }
}

#[test]
fn full_delay_correlation_repeats_the_first_delay() {
    let imp = LinkImpairment::new()
        .with_latency(ms(50))
        .with_jitter(ms(10))
        .with_latency_correlation(100.0);
    let mut m = LinkModel::new(&imp, SEED);
    let v = feed(&mut m, 100, MS, 100);
    let d0 = first(&v[0].1).delay;
    assert!(v.iter().all(|(_, v)| first(v).delay == d0));
}

#[test]
fn jitter_larger_than_latency_never_departs_before_arrival() {
    let imp = LinkImpairment::new()
        .with_latency(ms(2))
        .with_jitter(ms(10));
    let mut m = LinkModel::new(&imp, SEED);
    let v = feed(&mut m, 10_000, 100_000, 100);
    let mut at_once = 0;
    for (now, v) in &v {
        let d = first(v);
        assert!(d.at >= *now && d.at - now == d.delay);
        at_once += usize::from(d.at == *now);
    }
    // A negative draw (delay below 0: 8 of 20 ms of the range) is sent at once.
    assert_binomial("sent at once", at_once, v.len(), 8.0 / 20.0);
}

#[test]
fn netem_rate_spaces_departures_by_length_over_rate() {
    let rate = Rate::mbit(10);
    let imp = LinkImpairment::new()
        .with_latency(ms(5))
        .with_netem_rate(rate);
    let mut m = LinkModel::new(&imp, SEED);
    let len = 1000u32;
    // len * 8 / rate = 8000 bit / 10^7 bit/s = 800 us.
    let tx = u64::from(len) * 8 * 1_000_000_000 / rate.as_bits_per_sec();
    assert_eq!(tx, 800_000);
    // A burst at 0: the first after its delay and its own transmission, then one
    // transmission time apart.
    for k in 0..10u64 {
        assert_eq!(
            first(&m.admit(0, len)).at,
            5 * MS + (k + 1) * tx,
            "packet {k}"
        );
    }
    // Arrivals faster than the rate keep the spacing: the reference is the last packet.
    for k in 10..20u64 {
        let now = (k - 10) * 100_000;
        assert_eq!(first(&m.admit(now, len)).at, 5 * MS + (k + 1) * tx);
    }
    // Once netem is empty, a packet waits only its delay and its own transmission.
    assert_eq!(first(&m.admit(1_000 * MS, len)).at, 1_005 * MS + tx);
}

#[test]
fn shaper_sends_the_burst_then_spaces_at_the_rate() {
    let imp = LinkImpairment::new()
        .with_rate(Rate::mbit(10))
        .with_burst(10 * 1024);
    assert!(!imp.needs_netem(), "shaper alone, as on the kernel");
    let tbf = Tbf::from_impairment(&imp).unwrap();
    let (len, tx) = (1000u32, 800_000u64);
    let bucket = u64::from(tbf.burst) * 1_000_000_000 / tbf.rate.as_bytes_per_sec();
    assert_eq!(bucket, 8_192_000);
    let mut m = LinkModel::new(&imp, SEED);
    let v: Vec<Verdict> = (0..200).map(|_| m.admit(0, len)).collect();
    let in_bucket = (u64::from(tbf.burst) / u64::from(len)) as usize;
    assert_eq!(in_bucket, 10);
    for (k, v) in v.iter().enumerate().take(in_bucket) {
        assert_eq!(first(v).at, 0, "packet {k} is in the burst");
    }
    // The 11th waits until the bucket (192 us of tokens left) holds 800 us.
    let after = (in_bucket as u64 + 1) * tx - bucket;
    assert_eq!(after, 608_000);
    // The queue holds what fits its byte limit: rate * 50 ms + burst.
    let queue = (u64::from(tbf.limit_bytes()) / u64::from(len)) as usize;
    assert_eq!(tbf.limit_bytes(), 62_500 + 10_240);
    for (k, v) in v.iter().enumerate().skip(in_bucket).take(queue) {
        let j = (k - in_bucket) as u64;
        assert_eq!(first(v).at, after + j * tx, "queued packet {k}");
    }
    for v in &v[in_bucket + queue..] {
        assert_eq!(*v, Verdict::Drop(DropCause::QueueFull));
    }
    // The longest wait stays within the queue latency (plus one burst of lead).
    let last = first(&v[in_bucket + queue - 1]).at;
    assert!(last <= 50 * MS + bucket, "{last}");
    // Once the queue has drained, a packet meets a bucket refilled at the rate.
    let later = last + bucket;
    assert_eq!(first(&m.admit(later, len)).at, later);
}

#[test]
fn shaper_refuses_a_packet_larger_than_its_bucket() {
    let imp = LinkImpairment::new()
        .with_rate(Rate::mbit(1))
        .with_burst(1024);
    let mut m = LinkModel::new(&imp, SEED);
    assert_eq!(m.admit(0, 1025), Verdict::Drop(DropCause::QueueFull));
    assert_eq!(first(&m.admit(0, 1024)).at, 0);
}

#[test]
fn netem_limit_drops_when_full_and_frees_on_departure_time() {
    let imp = LinkImpairment::new().with_latency(ms(100)).with_limit(10);
    let mut m = LinkModel::new(&imp, SEED);
    let v: Vec<Verdict> = (0..25).map(|_| m.admit(0, 100)).collect();
    let sent = v
        .iter()
        .filter(|v| matches!(v, Verdict::Send { .. }))
        .count();
    assert_eq!(sent, 10);
    assert!(v[10..]
        .iter()
        .all(|v| *v == Verdict::Drop(DropCause::QueueFull)));
    // Still full just before the first departure, free at it.
    assert_eq!(
        m.admit(100 * MS - 1, 100),
        Verdict::Drop(DropCause::QueueFull)
    );
    assert_eq!(first(&m.admit(100 * MS, 100)).at, 200 * MS);
    // Memory follows the limit, not the offered load.
    for i in 0..10_000 {
        m.admit(100 * MS + i, 100);
    }
    assert!(m.netem.as_ref().unwrap().in_queue() <= 10);
}

#[test]
fn auto_limit_is_the_kernel_backends() {
    let imp = LinkImpairment::new()
        .with_latency(ms(1000))
        .with_netem_rate(Rate::gbit(1));
    let limit = crate::tc::netem::effective_limit(&imp) as usize;
    let mut m = LinkModel::new(&imp, SEED);
    let v: Vec<Verdict> = (0..limit + 5).map(|_| m.admit(0, 64)).collect();
    let sent = v
        .iter()
        .filter(|v| matches!(v, Verdict::Send { .. }))
        .count();
    assert_eq!(sent, limit);
}

#[test]
fn reorder_with_gap_sends_every_gapth_packet_at_once() {
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_reorder(100.0)
        .with_gap(5);
    let mut m = LinkModel::new(&imp, SEED);
    for k in 0..30u64 {
        let now = k * MS;
        let d = first(&m.admit(now, 100));
        if k % 5 == 4 {
            assert!(d.reordered && d.at == now && d.delay == 0, "packet {k}");
        } else {
            assert!(!d.reordered && d.at == now + 10 * MS, "packet {k}");
        }
    }
}

#[test]
fn reorder_without_gap_draws_every_packet() {
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_reorder(25.0);
    let mut m = LinkModel::new(&imp, SEED);
    let n = 50_000;
    let v = feed(&mut m, n, 10_000, 100);
    let count = v.iter().filter(|(_, v)| first(v).reordered).count();
    assert_binomial("reordered", count, n, scaled(25.0));
}

#[test]
fn gap_without_reorder_reorders_nothing() {
    let imp = LinkImpairment::new().with_latency(ms(10)).with_gap(3);
    let mut m = LinkModel::new(&imp, SEED);
    let v = feed(&mut m, 100, MS, 100);
    assert!(v.iter().all(|(_, v)| !first(v).reordered));
}

#[test]
fn reordered_packets_skip_the_shaper() {
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_reorder(100.0)
        .with_gap(2)
        .with_rate(Rate::mbit(1));
    let mut m = LinkModel::new(&imp, SEED);
    // The delayed packets overflow the shaper (1 Mbit/s, a 12 KB queue); every other
    // packet is reordered and leaves at once all the same.
    let (mut reordered, mut refused) = (0, 0);
    for k in 0..40 {
        match m.admit(0, 1000) {
            Verdict::Send { first: d, .. } if d.reordered => {
                assert_eq!((k % 2, d.at), (1, 0));
                reordered += 1;
            }
            Verdict::Send { first: d, .. } => assert!(d.at >= 10 * MS),
            Verdict::Drop(cause) => {
                assert_eq!(cause, DropCause::QueueFull);
                refused += 1;
            }
        }
    }
    assert_eq!(reordered, 20);
    assert!(refused > 0, "the shaper was full");
}

#[test]
fn duplication_rate_and_copies() {
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_duplicate(10.0);
    let mut m = LinkModel::new(&imp, SEED);
    let n = 50_000;
    let v = feed(&mut m, n, 10_000, 100);
    let mut dups = 0;
    for (now, v) in &v {
        if let Verdict::Send {
            first,
            duplicate: Some(d),
        } = v
        {
            dups += 1;
            assert_eq!((first.at, d.at), (now + 10 * MS, now + 10 * MS));
        }
    }
    assert_binomial("duplicated", dups, n, scaled(10.0));
    assert_eq!(m.queued().0 as usize, n + dups);
}

#[test]
fn duplicated_and_lost_goes_on_as_one_copy() {
    // netem: count = 1 + duplicated - lost, so with both at 100% every packet passes
    // once, never duplicated, never lost.
    let imp = LinkImpairment::new().with_duplicate(100.0).with_loss(100.0);
    let mut m = LinkModel::new(&imp, SEED);
    for (now, v) in feed(&mut m, 100, 1_000, 100) {
        assert_eq!(
            v,
            Verdict::Send {
                first: Departure {
                    at: now,
                    corrupt_bit: None,
                    reordered: false,
                    delay: 0
                },
                duplicate: None
            }
        );
    }
}

#[test]
fn corruption_flips_one_bit_inside_the_frame() {
    let imp = LinkImpairment::new().with_corrupt(50.0);
    let mut m = LinkModel::new(&imp, SEED);
    let (n, len) = (20_000, 100u32);
    let v = feed(&mut m, n, 1_000, len);
    let bits: Vec<u32> = v.iter().filter_map(|(_, v)| first(v).corrupt_bit).collect();
    assert_binomial("corrupted", bits.len(), n, scaled(50.0));
    assert!(bits.iter().all(|&b| b < len * 8));
    // Uniform over the frame: the first header byte and the last byte both get hit,
    // and the halves share the flips evenly.
    let low = bits.iter().filter(|&&b| b < len * 4).count();
    assert_binomial("first half", low, bits.len(), 0.5);
    assert!(bits.iter().any(|&b| b < 8) && bits.iter().any(|&b| b >= len * 8 - 8));
}

#[test]
fn reconfigure_applies_to_the_next_packet_and_keeps_the_queue() {
    let slow = LinkImpairment::new().with_latency(ms(100));
    let mut m = LinkModel::new(&slow, SEED);
    let before: Vec<Departure> = (0..5).map(|_| first(&m.admit(0, 100))).collect();
    assert!(before.iter().all(|d| d.at == 100 * MS));
    m.reconfigure(&LinkImpairment::new().with_latency(ms(10)));
    assert_eq!(m.queued(), (5, 500), "queued copies stay queued");
    assert_eq!(first(&m.admit(MS, 100)).at, 11 * MS);
    m.departed(100);
    assert_eq!(m.queued(), (5, 500));
}

#[test]
fn reconfigure_keeps_netems_rate_tail() {
    let imp = LinkImpairment::new()
        .with_latency(ms(5))
        .with_netem_rate(Rate::mbit(10));
    let mut m = LinkModel::new(&imp, SEED);
    for _ in 0..10 {
        m.admit(0, 1000);
    }
    // The last of those leaves at 5 ms + 10 * 800 us; a shorter delay does not let the
    // next packet overtake it.
    m.reconfigure(&imp.clone().with_latency(ms(1)));
    assert_eq!(first(&m.admit(0, 1000)).at, 5 * MS + 11 * 800_000);
}

#[test]
fn reconfigure_keeps_the_shapers_tokens() {
    let imp = LinkImpairment::new()
        .with_rate(Rate::mbit(10))
        .with_burst(10 * 1024);
    let mut m = LinkModel::new(&imp, SEED);
    for _ in 0..10 {
        assert_eq!(first(&m.admit(0, 1000)).at, 0);
    }
    // 192 us of tokens at 10 Mbit/s are 240 bytes, 96 us at 20 Mbit/s: the next 1000
    // bytes (400 us at 20 Mbit/s) wait 304 us. (A TBF change in the kernel refills.)
    m.reconfigure(&imp.clone().with_rate(Rate::mbit(20)));
    assert_eq!(first(&m.admit(0, 1000)).at, 304_000);
}

#[test]
fn reconfigure_restarts_netems_gap_counter() {
    let imp = LinkImpairment::new()
        .with_latency(ms(10))
        .with_reorder(100.0)
        .with_gap(5);
    let mut m = LinkModel::new(&imp, SEED);
    for _ in 0..3 {
        assert!(!first(&m.admit(0, 100)).reordered);
    }
    m.reconfigure(&imp.clone().with_latency(ms(20)));
    let pattern: Vec<bool> = (0..5).map(|_| first(&m.admit(0, 100)).reordered).collect();
    assert_eq!(pattern, [false, false, false, false, true]);
}

fn rich() -> LinkImpairment {
    LinkImpairment::new()
        .with_latency(ms(20))
        .with_jitter(ms(5))
        .with_distribution(Distribution::Normal)
        .with_latency_correlation(25.0)
        .with_loss(5.0)
        .with_duplicate(3.0)
        .with_corrupt(2.0)
        .with_reorder(10.0)
        .with_gap(3)
        .with_rate(Rate::mbit(50))
}

#[test]
fn same_seed_same_fates_other_seed_other_fates() {
    let run = |seed| feed(&mut LinkModel::new(&rich(), seed), 5_000, 50_000, 1200);
    let a = run(SEED);
    assert_eq!(a, run(SEED));
    let b = run(SEED + 1);
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(differ > 1_000, "only {differ} of 5000 fates differ");
}

#[test]
fn a_reconfigure_to_the_same_impairment_changes_nothing() {
    let mut a = LinkModel::new(&rich(), SEED);
    let mut b = LinkModel::new(&rich(), SEED);
    for i in 0..2_000u64 {
        if i % 100 == 0 {
            b.reconfigure(&rich());
        }
        assert_eq!(a.admit(i * 50_000, 1200), b.admit(i * 50_000, 1200));
    }
}

#[test]
fn links_draw_from_their_own_streams() {
    let network = 42;
    let seeds = [
        link_seed(network, 0, 1),
        link_seed(network, 1, 0),
        link_seed(network, 0, 2),
        link_seed(network + 1, 0, 1),
    ];
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(seeds[0], link_seed(network, 0, 1));
    // Link 0->1 alone, then interleaved with busy traffic on 0->2: the same fates.
    let alone = feed(&mut LinkModel::new(&rich(), seeds[0]), 3_000, 50_000, 1200);
    let mut one = LinkModel::new(&rich(), seeds[0]);
    let mut two = LinkModel::new(&rich(), seeds[2]);
    for (i, (now, want)) in alone.iter().enumerate() {
        for k in 0..(i % 4) as u64 {
            two.admit(now + k, 600);
        }
        assert_eq!(one.admit(*now, 1200), *want, "packet {i}");
    }
}

#[test]
fn a_links_own_seed_overrides_the_networks() {
    let imp = rich().with_seed(7);
    let a = feed(&mut LinkModel::new(&imp, 1), 2_000, 50_000, 1200);
    let b = feed(&mut LinkModel::new(&imp, 2), 2_000, 50_000, 1200);
    assert_eq!(a, b);
    let c = feed(&mut LinkModel::new(&rich(), 1), 2_000, 50_000, 1200);
    assert_ne!(a, c);
}

#[test]
fn uniform_only_without_per_packet_randomness_or_rate() {
    let uniform = [
        LinkImpairment::new(),
        LinkImpairment::new().with_latency(ms(30)),
        LinkImpairment::new()
            .with_latency(ms(30))
            .with_latency_correlation(50.0),
        LinkImpairment::new().with_seed(3),
    ];
    for imp in &uniform {
        assert!(LinkModel::new(imp, SEED).is_uniform(), "{imp:?}");
    }
    let base = LinkImpairment::new().with_latency(ms(30));
    let not = [
        base.clone().with_jitter(ms(1)),
        base.clone().with_loss(0.1),
        base.clone().with_duplicate(0.1),
        base.clone().with_corrupt(0.1),
        base.clone().with_reorder(1.0),
        base.clone().with_rate(Rate::mbit(100)),
        base.clone().with_netem_rate(Rate::mbit(100)),
        base.clone().with_limit(50),
        base.clone().with_loss_model(LossModel::GilbertElliott {
            p: Percent(1.0),
            r: Percent(10.0),
            bad_loss: Percent(100.0),
            good_loss: Percent(0.0),
        }),
    ];
    for imp in &not {
        assert!(!LinkModel::new(imp, SEED).is_uniform(), "{imp:?}");
    }
    let mut m = LinkModel::new(&base, SEED);
    m.reconfigure(&base.clone().with_loss(1.0));
    assert!(!m.is_uniform());
}

#[test]
fn queued_counts_admitted_copies_until_departed() {
    let imp = LinkImpairment::new().with_latency(ms(10));
    let mut m = LinkModel::new(&imp, SEED);
    assert_eq!(m.queued(), (0, 0));
    m.admit(0, 1500);
    m.admit(0, 60);
    assert_eq!(m.queued(), (2, 1560));
    m.departed(1500);
    assert_eq!(m.queued(), (1, 60));
    m.departed(60);
    m.departed(60);
    assert_eq!(m.queued(), (0, 0), "never below zero");
}

#[test]
fn capacity_is_netem_limit_plus_the_shaper_queue_in_smallest_frames() {
    let wan = LinkImpairment::new()
        .with_latency(ms(10))
        .with_rate(Rate::gbit(1));
    let tbf = Tbf::from_impairment(&wan).unwrap();
    // 7.5 MB of shaper queue (50 ms plus a 10 ms burst at 125 MB/s) in 42-byte frames.
    assert_eq!(tbf.limit_bytes(), 7_500_000);
    let shaper = 7_500_000u64.div_ceil(42);
    assert_eq!(
        LinkModel::capacity(&wan),
        u64::from(crate::tc::netem::effective_limit(&wan)) + shaper
    );
    let shaper_only = LinkImpairment::new().with_rate(Rate::gbit(1));
    assert_eq!(LinkModel::capacity(&shaper_only), shaper, "no netem stage");
    let netem_only = LinkImpairment::new().with_latency(ms(10)).with_limit(10);
    assert_eq!(LinkModel::capacity(&netem_only), 10);
}
