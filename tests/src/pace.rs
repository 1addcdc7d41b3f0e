//! The pace of a serialiser, from when its packets arrived.
//!
//! A serialiser (netem's `rate`, a shaper) gives each packet of a backlog a due time,
//! one frame time after the previous one. When it runs late (a timer or a thread not
//! scheduled) it sends what it owes at once and then keeps to its schedule, so an
//! arrival is its due time plus a lateness that is never negative: the on-time
//! arrivals lie on one line whose slope is the frame time, and every other arrival
//! lies above that line. The lower convex hull of the arrivals follows it.
//!
//! A token bucket (TBF) also lets a burst through at once after it idled. Given when
//! packets reached it at the earliest, [`token_bucket_departures`] gives when each may
//! leave at the earliest: no packet of a correct shaper arrives before that, whatever
//! its lateness.

/// The longest stretch of consecutive numbers in `ks` (ascending).
pub fn longest_run(ks: impl Iterator<Item = usize>) -> std::ops::Range<usize> {
    let mut best = 0..0;
    let mut current = 0..0;
    for k in ks {
        current = if !current.is_empty() && current.end == k {
            current.start..k + 1
        } else {
            k..k + 1
        };
        if current.len() > best.len() {
            best = current.clone();
        }
    }
    best
}

/// The slope at `x` of the lower convex hull of `points` (ascending in x; at a vertex,
/// of the edge to its left). Where each half of the points has one that is on time
/// within `e`, the slope at the middle is off the on-time line's by at most `e` over
/// the distance from that point to the middle.
///
/// Panics with fewer than two points or `x` outside them.
pub fn lower_hull_slope_at(points: &[(f64, f64)], x: f64) -> f64 {
    // > 0 when o -> a -> b turns left (counter-clockwise).
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for &p in points {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let edge = hull
        .windows(2)
        .find(|w| w[0].0 <= x && x <= w[1].0)
        .expect("at least two points, and x within them");
    (edge[1].1 - edge[0].1) / (edge[1].0 - edge[0].0)
}

/// The pace of a backlogged run of departures: `run` holds the departures that each
/// left behind the previous one, so `run.start - 1` through `run.end - 1` are one
/// schedule, `at(k)` (seconds) is when departure k arrived, and the pace is the slope
/// of the arrivals' lower convex hull at the run's middle (see the module's docs).
///
/// Panics if `run` is empty or starts at 0.
pub fn backlogged_pace(run: std::ops::Range<usize>, at: impl Fn(usize) -> f64) -> f64 {
    let first = run.start - 1;
    let points: Vec<(f64, f64)> = (first..run.end)
        .map(|k| ((k - first) as f64, at(k) - at(first)))
        .collect();
    lower_hull_slope_at(&points, (run.end - 1 - first) as f64 / 2.0)
}

/// When each of a FIFO token bucket's packets may leave at the earliest: the bucket
/// holds `burst` bytes, fills at `rate` bytes/s, is full at the start (as `tbf_init`
/// leaves it), and a packet of `len` bytes leaves once its bytes are in the bucket
/// (`tbf_dequeue()`). `arrivals` (ascending, in seconds) are when the packets reached
/// the bucket, or earlier: a shaper is monotone (a packet that arrives later never
/// leaves earlier, nor lets those behind it leave earlier), so departures computed from
/// floors of the arrivals are floors of the departures.
pub fn token_bucket_departures(arrivals: &[f64], len: f64, rate: f64, burst: f64) -> Vec<f64> {
    let cost = len / rate;
    let buffer = burst / rate;
    // Seconds' worth of tokens at `last`, the previous departure.
    let (mut tokens, mut last) = (buffer, f64::NEG_INFINITY);
    arrivals
        .iter()
        .map(|&arrival| {
            let ready = arrival.max(last);
            if last.is_finite() {
                tokens = (tokens + (ready - last)).min(buffer);
            }
            let departure = ready + (cost - tokens).max(0.0);
            tokens = (tokens - cost).max(0.0);
            last = departure;
            departure
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_of_consecutive_numbers() {
        assert_eq!(longest_run([1, 2, 3, 7, 8, 9, 10, 12].into_iter()), 7..11);
        assert_eq!(longest_run([4].into_iter()), 4..5);
        assert_eq!(longest_run(std::iter::empty()), 0..0);
    }

    #[test]
    fn late_arrivals_do_not_move_the_slope() {
        // Due every 1.0; a stall makes 10..20 late by up to 6, caught up 0.5 a packet.
        let points: Vec<(f64, f64)> = (0..100)
            .map(|k| {
                let late = if (10..22).contains(&k) {
                    (6.0 - 0.5 * (k - 10) as f64).max(0.0)
                } else {
                    0.0
                };
                (k as f64, k as f64 + late)
            })
            .collect();
        assert_eq!(lower_hull_slope_at(&points, 49.5), 1.0);
        // A line slower by 2.4 % shows as such.
        let slow: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x, y * 1.024)).collect();
        assert!((lower_hull_slope_at(&slow, 49.5) - 1.024).abs() < 1e-9);
    }

    #[test]
    fn a_schedule_that_slips_steepens_the_slope() {
        // The schedule itself moved 9 ms back at packet 5 (a serialiser counting from
        // when it read the packet): the line from either end is steeper than 1.
        let points: Vec<(f64, f64)> = (0..100)
            .map(|k| (k as f64, k as f64 + if k >= 5 { 9.0 } else { 0.0 }))
            .collect();
        assert!(lower_hull_slope_at(&points, 49.5) > 1.05);
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_keeps_to_the_rate() {
        // 10 bytes a second, a bucket of 3 packets of 1 byte: all arrive at 0.
        let at = token_bucket_departures(&[0.0; 6], 1.0, 10.0, 3.0);
        let want = [0.0, 0.0, 0.0, 0.1, 0.2, 0.3];
        for (got, want) in at.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{at:?}");
        }
        // After 0.25 s of idling the bucket holds 2.5 packets' worth again: two leave on
        // arrival, the third waits for the missing half.
        let at = token_bucket_departures(&[0.0, 0.0, 0.0, 0.25, 0.25, 0.25], 1.0, 10.0, 3.0);
        let want = [0.0, 0.0, 0.0, 0.25, 0.25, 0.3];
        for (got, want) in at.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{at:?}");
        }
    }
}
