//! netem's delay draw: `tabledist(mu, sigma, state, table)`.

use crate::tc::dist::DIST_SCALE;

use super::stream::{Correlated, Stream};

/// netem's `tabledist` (Linux 6.x): `mu` and `sigma` in nanoseconds, `sigma` already
/// capped to `i32::MAX` as `netem_change` caps the jitter.
///
/// - `sigma == 0`: exactly `mu`, and nothing is drawn.
/// - No table (uniform): `(rnd % (2 sigma)) + mu - sigma`, i.e. `mu - sigma ..= mu +
///   sigma - 1` in whole nanoseconds.
/// - A table: `t = table[rnd % len]`, then `mu + t * sigma / 8192` computed the way the
///   kernel avoids overflow (`sigma / 8192 * t` plus the rounded `sigma % 8192 * t /
///   8192`, C division truncating toward zero).
///
/// The result may be negative (a jitter larger than the latency): netem then sends at
/// once, and so does the model.
pub(crate) fn tabledist(
    mu: i64,
    sigma: i32,
    state: &mut Correlated,
    stream: &mut Stream,
    table: Option<&[i16]>,
) -> i64 {
    if sigma == 0 {
        return mu;
    }
    let rnd = state.next(stream);
    let sigma_u = sigma.unsigned_abs();
    match table {
        None => i64::from(rnd % (2 * sigma_u)) + mu - i64::from(sigma),
        Some(table) => {
            let t = i64::from(table[rnd as usize % table.len()]);
            let scale = i64::from(DIST_SCALE);
            let sigma = i64::from(sigma);
            let mut x = (sigma % scale) * t;
            if x >= 0 {
                x += scale / 2;
            } else {
                x -= scale / 2;
            }
            x / scale + (sigma / scale) * t + mu
        }
    }
}
