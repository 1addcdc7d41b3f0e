//! netem's delay distribution tables, generated in code.
//!
//! netem draws a jittered delay as `latency + jitter * t / NETEM_DIST_SCALE`, where `t`
//! is a random entry of a table of `i16` that samples the inverse cumulative
//! distribution function (kernel `tabledist()`). iproute2 does not compute the tables
//! at run time: it ships files (`/usr/lib/tc/normal.dist` ...) made at build time by
//! small generators (`netem/normal.c`, `pareto.c`, `paretonormal.c`, from NISTnet).
//! linkem computes the same tables with the same algorithms, so it reads no file; the
//! tests check the results against the bytes `tc` sends (fixtures) and, where Debian's
//! iproute2 is installed, against its `.dist` files.
//!
//! The generators, as documented by their sources:
//! - normal: step `x` from -10 by 0.00005 while `x < 10.05`, record `x` at index
//!   `rint(16384 * Phi(x))` of a 16385-slot table (the last `x` wins), then emit every
//!   fourth slot `i < 16384` as `rint(x * 8192)`, clamped to `i16`.
//! - pareto (shape a = 3): for `i` from 65536 down by 16 while `i > 0`, emit
//!   `rint((u^(-1/a) - 1.5) * 4/3 * 8192)` with `u = i / 65536`, capped at 32767.
//! - paretonormal: `(normal + 3 * pareto) / 4` in integer arithmetic (truncating),
//!   where the pareto term uses `u = (65536 - 4i) / 65536` for the same `i` as normal.
//!
//! The floating-point steps are kept in the same order (the accumulated `x`, `rint`'s
//! ties-to-even), and `erf` comes from the `libm` crate, a port of the same fdlibm
//! algorithm glibc uses; the generated tables equal Debian's files entry for entry.

use std::sync::OnceLock;

use crate::impairment::Distribution;

/// `NETEM_DIST_SCALE`: a table entry of 8192 means one `jitter`.
pub const DIST_SCALE: i32 = 8192;
/// Entries in each generated table (what iproute2's `.dist` files hold).
pub const TABLE_LEN: usize = 4096;
/// `NETEM_DIST_MAX`: the largest table the kernel accepts.
pub const DIST_MAX: usize = 16384;
// get_dist_table() in sch_netem.c refuses a longer table with EINVAL.
const _: () = assert!(TABLE_LEN <= DIST_MAX);

/// Resolution of the normal generator's intermediate table.
const FINE: usize = 16384;

/// The table for a distribution; `None` for [`Distribution::Uniform`], which netem
/// implements without a table.
pub fn table(distribution: Distribution) -> Option<&'static [i16]> {
    static NORMAL: OnceLock<Vec<i16>> = OnceLock::new();
    static PARETO: OnceLock<Vec<i16>> = OnceLock::new();
    static PARETONORMAL: OnceLock<Vec<i16>> = OnceLock::new();
    match distribution {
        Distribution::Uniform => None,
        Distribution::Normal => Some(NORMAL.get_or_init(normal)),
        Distribution::Pareto => Some(PARETO.get_or_init(pareto)),
        Distribution::ParetoNormal => Some(PARETONORMAL.get_or_init(paretonormal)),
    }
}

/// A table as the payload of `TCA_NETEM_DELAY_DIST` (host-order `i16`s).
pub fn table_bytes(table: &[i16]) -> Vec<u8> {
    table.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// `rint` in the default rounding mode.
fn rint(x: f64) -> f64 {
    x.round_ties_even()
}

fn clamp_i16(v: i64) -> i16 {
    v.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

/// The standard normal cumulative distribution function, as `netem/normal.c` writes it.
fn phi(x: f64) -> f64 {
    0.5 + 0.5 * libm::erf(x / std::f64::consts::SQRT_2)
}

/// The normal generator's intermediate table: `x` values indexed by `rint(16384 Phi(x))`.
fn inverse_normal_fine() -> Vec<f64> {
    let mut fine = vec![0.0; FINE + 1];
    let mut x = -10.0_f64;
    while x < 10.05 {
        let i = rint(FINE as f64 * phi(x)) as usize;
        fine[i] = x;
        x += 0.00005;
    }
    fine
}

/// The normal distribution table (`normal.dist`).
pub fn normal() -> Vec<i16> {
    let fine = inverse_normal_fine();
    (0..FINE)
        .step_by(4)
        .map(|i| clamp_i16(rint(fine[i] * f64::from(DIST_SCALE)) as i64))
        .collect()
}

/// One Pareto value for `u = i / 65536` (shape 3, shifted and scaled as NISTnet does).
fn pareto_value(i: i32) -> i32 {
    let mut d = f64::from(i) / 65536.0;
    d = 1.0 / d.powf(1.0 / 3.0);
    d -= 1.5;
    d *= (4.0 / 3.0) * f64::from(DIST_SCALE);
    if d > 32767.0 {
        d = 32767.0;
    }
    rint(d) as i32
}

/// The Pareto distribution table (`pareto.dist`).
pub fn pareto() -> Vec<i16> {
    (1..=65536 / 16)
        .rev()
        .map(|k| clamp_i16(i64::from(pareto_value(k * 16))))
        .collect()
}

/// The Pareto-normal mixture table (`paretonormal.dist`).
pub fn paretonormal() -> Vec<i16> {
    let fine = inverse_normal_fine();
    (0..FINE)
        .step_by(4)
        .map(|i| {
            let normal = rint(fine[i] * f64::from(DIST_SCALE)) as i32;
            let pareto = pareto_value(65536 - 4 * i as i32);
            // C's integer division truncates toward zero, as Rust's does.
            clamp_i16(i64::from((normal + 3 * pareto) / 4))
        })
        .collect()
}

/// A table that makes netem's tabled draw uniform in `latency ± jitter`.
///
/// netem cannot drop a table once it has one (an empty `TCA_NETEM_DELAY_DIST` is
/// refused and an absent one keeps the old table), so going back to
/// [`Distribution::Uniform`] in place sends this evenly spaced table instead:
/// 4096 steps from -8192 to 8188, i.e. `jitter * [-1, 1)`.
pub fn uniform() -> Vec<i16> {
    (0..TABLE_LEN as i32)
        .map(|i| {
            clamp_i16(i64::from(
                -DIST_SCALE + i * (2 * DIST_SCALE) / TABLE_LEN as i32,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: &[i16]) -> (f64, f64) {
        let n = t.len() as f64;
        let mean = t.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = t
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (
            mean / f64::from(DIST_SCALE),
            var.sqrt() / f64::from(DIST_SCALE),
        )
    }

    #[test]
    fn sizes_and_monotonicity() {
        for d in [
            Distribution::Normal,
            Distribution::Pareto,
            Distribution::ParetoNormal,
        ] {
            let t = table(d).unwrap();
            assert_eq!(t.len(), TABLE_LEN, "{d:?}");
            assert!(
                t.windows(2).all(|w| w[0] <= w[1]),
                "{d:?} is an inverse CDF"
            );
        }
        assert!(table(Distribution::Uniform).is_none());
        assert_eq!(uniform().len(), TABLE_LEN);
        assert_eq!((uniform()[0], uniform()[4095]), (-8192, 8188));
    }

    #[test]
    fn normal_is_standard() {
        let t = normal();
        // The ends are clamped (|x| > 4 does not fit i16 * 8192).
        assert_eq!((t[0], t[1], t[2]), (-32768, -28307, -26871));
        let (mean, sd) = stats(&t);
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((sd - 1.0).abs() < 0.02, "{sd}");
    }

    #[test]
    fn pareto_head_and_tail() {
        let t = pareto();
        // u = 1: (1 - 1.5) * 4/3 * 8192 = -5461.33.
        assert_eq!(t[0], -5461);
        assert_eq!(t[TABLE_LEN - 1], 32767);
    }

    #[test]
    fn paretonormal_mixes() {
        let (n, p, pn) = (normal(), pareto(), paretonormal());
        // Entry 1000: normal uses fine index 4000, pareto u = (65536 - 16000) / 65536.
        let want = (i32::from(n[1000]) + 3 * pareto_value(65536 - 16000)) / 4;
        assert_eq!(i32::from(pn[1000]), want);
        assert_ne!(pn, p);
    }

    /// Debian's iproute2 ships the tables tc reads; when present they must be equal.
    #[test]
    fn equals_installed_dist_files() {
        let dirs = [
            "/usr/lib/x86_64-linux-gnu/tc",
            "/usr/lib/tc",
            "/usr/lib64/tc",
        ];
        let mut checked = 0;
        for (name, d) in [
            ("normal", Distribution::Normal),
            ("pareto", Distribution::Pareto),
            ("paretonormal", Distribution::ParetoNormal),
        ] {
            let Some(text) = dirs
                .iter()
                .find_map(|dir| std::fs::read_to_string(format!("{dir}/{name}.dist")).ok())
            else {
                continue;
            };
            let want: Vec<i16> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .flat_map(|l| l.split_whitespace().map(|w| w.parse::<i16>().unwrap()))
                .collect();
            assert_eq!(table(d).unwrap(), want.as_slice(), "{name}.dist");
            checked += 1;
        }
        eprintln!("compared {checked} installed .dist files");
    }
}
