//! The attribute against the library it expands for: the keys of `all(..)` and
//! `link(..)` must cover `LinkImpairment`, and the bounds the macro checks at compile
//! time must be the library's. The macro cannot import linkem (linkem depends on it),
//! so these tests are what keeps the two from drifting apart.

use std::time::Duration;

use linkem::tc::impairment::{Rate, MAX_DELAY, MAX_RATE};

/// `(key, field)` for every key; compiling it already proves that every field of
/// `LinkImpairment` and of each `LossModel` variant has a key (see the macro's docs).
const KEYS: &[(&str, &str)] = linkem_macros::__impairment_keys!();

#[test]
fn every_field_of_link_impairment_has_exactly_one_key() {
    let mut macro_fields: Vec<&str> = KEYS.iter().map(|(_, field)| *field).collect();
    let mut library = linkem::impairment::FIELDS.to_vec();
    macro_fields.sort_unstable();
    library.sort_unstable();
    assert_eq!(macro_fields, library);
}

#[test]
fn the_macro_checks_the_library_bounds() {
    let (max_delay_secs, max_rate_bits): (u64, u64) = linkem_macros::__impairment_limits!();
    assert_eq!(Duration::from_secs(max_delay_secs), MAX_DELAY);
    assert_eq!(Rate::bits_per_sec(max_rate_bits), MAX_RATE);
}
