//! Literals with units: durations, percentages, rates, sizes and subnets.
//!
//! Pure functions from the literal's text to its value. Numbers are decimal and read
//! exactly (`"1.5mbit"` is 1 500 000 bit/s, not a float rounded), and a value that is
//! not a whole number of the base unit is refused rather than rounded. Unit names are
//! case-insensitive. Each error is a whole sentence naming the literal, for the span
//! of that literal.

use std::net::IpAddr;
use std::time::Duration;

/// Duration units, as in tc and `humantime` (minus the ambiguous `m`).
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Rate units in bits per second: SI like tc (`kbit` is 1000 bit/s), and IEC.
const RATE_UNITS: &[(&str, u128)] = &[
    ("bit", 1),
    ("kbit", 1_000),
    ("mbit", 1_000_000),
    ("gbit", 1_000_000_000),
    ("tbit", 1_000_000_000_000),
    ("kibit", 1 << 10),
    ("mibit", 1 << 20),
    ("gibit", 1 << 30),
    ("tibit", 1 << 40),
];

/// Byte-based rate units, which tc has but which read as bits to most people.
const BYTE_RATE_UNITS: &[(&str, u128)] = &[
    ("bps", 1),
    ("kbps", 1_000),
    ("mbps", 1_000_000),
    ("gbps", 1_000_000_000),
    ("tbps", 1_000_000_000_000),
];

/// Size units in bytes; binary, as tc reads them (`kb` is 1024 bytes).
const SIZE_UNITS: &[(&str, u128)] = &[
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
    ("gib", 1 << 30),
];

/// The fastest rate accepted, as `linkem::tc::impairment::MAX_RATE` (the test in
/// `tests/library.rs` keeps the two equal): 1000 Tbit/s.
pub(crate) const MAX_RATE_BITS: u64 = 1_000_000_000_000_000;

/// A non-negative decimal `mantissa / 10^scale`, kept exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: u128,
    scale: u32,
}

impl Decimal {
    /// `digits` or `digits.digits`, at most 30 digits in all.
    fn parse(number: &str) -> Option<Decimal> {
        let (int, frac) = match number.split_once('.') {
            Some((int, frac)) => (int, frac),
            None => (number, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits_only(int)
            || !digits_only(frac)
            || (number.contains('.') && frac.is_empty())
            || int.len() + frac.len() > 30
        {
            return None;
        }
        let mantissa = format!("{int}{frac}").parse().ok()?;
        Some(Decimal {
            mantissa,
            scale: frac.len() as u32,
        })
    }

    /// `self * factor`, if that is a whole number that fits.
    fn times(self, factor: u128) -> Result<u128, Inexact> {
        let product = self.mantissa.checked_mul(factor).ok_or(Inexact::TooLarge)?;
        let divisor = 10u128.pow(self.scale);
        if product.is_multiple_of(divisor) {
            Ok(product / divisor)
        } else {
            Err(Inexact::Fraction)
        }
    }

    fn as_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

enum Inexact {
    TooLarge,
    Fraction,
}

/// Splits `"1.5ms"` into `1.5` and `"ms"`, refusing signs and non-numbers.
fn split<'a>(text: &'a str, what: &str, example: &str) -> Result<(Decimal, &'a str), String> {
    split_text(text, what, example).map(|(number, _, unit)| (number, unit))
}

/// [`split`], with the number's text too.
fn split_text<'a>(
    text: &'a str,
    what: &str,
    example: &str,
) -> Result<(Decimal, &'a str, &'a str), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty {what}: write e.g. \"{example}\""));
    }
    if trimmed.starts_with('-') {
        return Err(format!("{what} \"{text}\" is negative"));
    }
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(end);
    let decimal = Decimal::parse(number).ok_or_else(|| {
        format!("\"{text}\" is not a {what}: write a decimal number and a unit, e.g. \"{example}\"")
    })?;
    Ok((decimal, number, unit.trim_start()))
}

fn lookup(unit: &str, table: &[(&str, u128)]) -> Option<u128> {
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, factor)| factor)
}

fn names(table: &[(&str, u128)]) -> String {
    let names: Vec<_> = table.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// `"250us"`, `"100ms"`, `"1.5s"`, `"2min"`: units ns, us (or µs), ms, s, min, h.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split(text, "duration", "100ms")?;
    if unit.is_empty() {
        return Err(format!(
            "duration \"{text}\" has no unit: write e.g. \"{n}ms\" or \"{n}s\" (units: {})",
            names(DURATION_UNITS),
            n = text.trim()
        ));
    }
    if unit.eq_ignore_ascii_case("m") {
        return Err(format!(
            "duration unit \"m\" in \"{text}\" is ambiguous: write \"min\" for minutes or \"ms\" for milliseconds"
        ));
    }
    let factor = lookup(unit, DURATION_UNITS).ok_or_else(|| {
        format!(
            "unknown duration unit \"{unit}\" in \"{text}\": use one of {}",
            names(DURATION_UNITS)
        )
    })?;
    let nanos = number.times(factor).map_err(|e| match e {
        Inexact::Fraction => format!("duration \"{text}\" is not a whole number of nanoseconds"),
        Inexact::TooLarge => format!("duration \"{text}\" is too long"),
    })?;
    let nanos = u64::try_from(nanos).map_err(|_| format!("duration \"{text}\" is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// `"1%"`, `"0.5%"`, `"100%"`: a percentage within 0..=100.
pub(crate) fn percent(text: &str) -> Result<f64, String> {
    let (number, unit) = split(text, "percentage", "1%")?;
    match unit {
        "%" => percent_value(number.as_f64(), text),
        "" => Err(format!(
            "percentage \"{text}\" has no % sign: write \"{text}%\" (or the number {})",
            float_text(number.as_f64())
        )),
        _ => Err(format!(
            "\"{text}\" is not a percentage: write a number and a % sign, e.g. \"1%\""
        )),
    }
}

/// A percentage given as a number (`1.0` is one percent), checked to be within 0..=100.
pub(crate) fn percent_value(value: f64, text: &str) -> Result<f64, String> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "percentage {text} is out of range: it must be within 0%..=100%"
        ))
    }
}

/// `"500kbit"`, `"10mbit"`, `"1.5gbit"`: bits per second, SI like tc (`kbit` is
/// 1000 bit/s) or IEC (`kibit` is 1024 bit/s). tc's byte units (`kbps` ...) are refused:
/// most readers take "mbps" for megabits.
pub(crate) fn rate(text: &str) -> Result<u64, String> {
    let (number, digits, unit) = split_text(text, "rate", "10mbit")?;
    if unit.is_empty() {
        return Err(format!(
            "rate \"{text}\" has no unit: write e.g. \"{text}mbit\" (units: {})",
            names(RATE_UNITS)
        ));
    }
    if let Some(factor) = lookup(unit, BYTE_RATE_UNITS) {
        let bits = unit.to_ascii_lowercase().replace("bps", "bit");
        let mut hint = String::new();
        if let Ok(bytes) = number.times(factor * 8) {
            if let Some(as_bits) = rate_text(bytes) {
                hint = format!(" (write \"{as_bits}\")");
            }
        }
        return Err(format!(
            "rate unit \"{unit}\" is ambiguous: tc reads \"{text}\" as bytes per second{hint}, \
             most people as bits per second (write \"{digits}{bits}\")"
        ));
    }
    let factor = lookup(unit, RATE_UNITS).ok_or_else(|| {
        format!(
            "unknown rate unit \"{unit}\" in \"{text}\": use one of {}",
            names(RATE_UNITS)
        )
    })?;
    let bits = number.times(factor).map_err(|e| match e {
        Inexact::Fraction => format!("rate \"{text}\" is not a whole number of bits per second"),
        Inexact::TooLarge => format!("rate \"{text}\" is too fast: at most 1000tbit"),
    })?;
    if bits == 0 {
        return Err(format!(
            "rate \"{text}\" is zero: leave the key out for no limit"
        ));
    }
    if bits < 8 {
        return Err(format!(
            "rate \"{text}\" is too slow: the kernel counts bytes per second, so at least 8bit"
        ));
    }
    if bits > u128::from(MAX_RATE_BITS) {
        return Err(format!("rate \"{text}\" is too fast: at most 1000tbit"));
    }
    Ok(bits as u64)
}

/// `"32kb"`, `"1.5mb"`, `"1500b"`: bytes, binary as tc reads them (`kb` is 1024 bytes).
pub(crate) fn size(text: &str) -> Result<u64, String> {
    let (number, unit) = split(text, "size", "32kb")?;
    if unit.is_empty() {
        return Err(format!(
            "size \"{text}\" has no unit: write e.g. \"{text}kb\", or the number of bytes \
             as an integer (units: {})",
            names(SIZE_UNITS)
        ));
    }
    let factor = lookup(unit, SIZE_UNITS).ok_or_else(|| {
        format!(
            "unknown size unit \"{unit}\" in \"{text}\": use one of {} (1kb = 1024 bytes, as in tc)",
            names(SIZE_UNITS)
        )
    })?;
    let bytes = number.times(factor).map_err(|e| match e {
        Inexact::Fraction => format!("size \"{text}\" is not a whole number of bytes"),
        Inexact::TooLarge => format!("size \"{text}\" is too large"),
    })?;
    u64::try_from(bytes).map_err(|_| format!("size \"{text}\" is too large"))
}

/// `"10.0.0.0/24"` or `"fd00::/64"`, checked as linkem's network checks it, and large
/// enough for `peers` (peer `n` gets the `n`-th host address).
pub(crate) fn subnet(text: &str, peers: Option<usize>) -> Result<(IpAddr, u8), String> {
    let Some((addr, prefix)) = text.trim().split_once('/') else {
        return Err(format!(
            "subnet \"{text}\" has no prefix length: write e.g. \"{}/24\"",
            text.trim()
        ));
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("\"{addr}\" in subnet \"{text}\" is not an IPv4 or IPv6 address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| {
        format!("\"{prefix}\" in subnet \"{text}\" is not a prefix length (a number of bits)")
    })?;
    let (bits, max_prefix, value) = match addr {
        IpAddr::V4(a) => (32u8, 30u8, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, 126, u128::from(a)),
    };
    if prefix > bits {
        return Err(format!(
            "subnet \"{text}\": the prefix length {prefix} is longer than the address ({bits} bits)"
        ));
    }
    if prefix > max_prefix {
        return Err(format!(
            "subnet \"{text}\" has room for fewer than two peers: use a prefix of at most /{max_prefix}"
        ));
    }
    let host_bits = u32::from(bits - prefix);
    let host_mask = 1u128.checked_shl(host_bits).map_or(u128::MAX, |b| b - 1);
    if value & host_mask != 0 {
        let network = value & !host_mask;
        let network = match addr {
            IpAddr::V4(_) => IpAddr::from((network as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(network.to_be_bytes()),
        };
        return Err(format!(
            "subnet \"{text}\" has host bits set: give the network address, \"{network}/{prefix}\""
        ));
    }
    let special = match addr {
        IpAddr::V4(a) => a.is_loopback() || a.is_multicast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_loopback() || a.is_multicast() || a.is_unspecified(),
    };
    if special {
        return Err(format!(
            "subnet \"{text}\" is a loopback, multicast or unspecified range, which cannot be \
             given to interfaces"
        ));
    }
    // Every host address but the network one, and for IPv4 the broadcast one too.
    let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    let capacity = match addr {
        IpAddr::V4(_) => size - 2,
        IpAddr::V6(_) => size - 1,
    };
    if let Some(peers) = peers {
        if peers as u128 > capacity {
            return Err(format!(
                "subnet \"{text}\" holds {capacity} peers, and the test has {peers}: use a \
                 shorter prefix"
            ));
        }
    }
    Ok((addr, prefix))
}

/// `12.0` as `12.0`, `0.5` as `0.5`: how a float literal is written.
fn float_text(value: f64) -> String {
    let text = value.to_string();
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// A rate in bits per second with the largest SI unit that keeps it whole.
fn rate_text(bits: u128) -> Option<String> {
    let (scale, unit) = [
        (1_000_000_000_000, "tbit"),
        (1_000_000_000, "gbit"),
        (1_000_000, "mbit"),
        (1_000, "kbit"),
        (1, "bit"),
    ]
    .into_iter()
    .find(|(scale, _)| bits.is_multiple_of(*scale) && bits >= *scale)?;
    Some(format!("{}{unit}", bits / scale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let ok = [
            ("0ns", 0),
            ("1ns", 1),
            ("250us", 250_000),
            ("250µs", 250_000),
            ("100ms", 100_000_000),
            ("100MS", 100_000_000),
            ("1.5s", 1_500_000_000),
            ("0.001s", 1_000_000),
            ("2min", 120_000_000_000),
            ("1h", 3_600_000_000_000),
            (" 10 ms ", 10_000_000),
        ];
        for (text, nanos) in ok {
            assert_eq!(duration(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
        let bad = [
            ("", "empty"),
            ("100", "no unit"),
            ("2m", "ambiguous"),
            ("10xs", "unknown duration unit \"xs\""),
            ("-1ms", "negative"),
            ("1.5ns", "whole number of nanoseconds"),
            ("1.ms", "not a duration"),
            (".5ms", "not a duration"),
            ("1.2.3ms", "not a duration"),
            ("ms", "not a duration"),
            ("nanms", "not a duration"),
            ("1e3ms", "unknown duration unit"),
            ("99999999999999999999999999h", "too long"),
            ("1000000000000000000000000000000h", "not a duration"),
        ];
        for (text, want) in bad {
            let err = duration(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn percents() {
        assert_eq!(percent("1%"), Ok(1.0));
        assert_eq!(percent("0.5%"), Ok(0.5));
        assert_eq!(percent("100%"), Ok(100.0));
        assert_eq!(percent("0%"), Ok(0.0));
        let bad = [
            ("150%", "out of range"),
            ("100.01%", "out of range"),
            ("-1%", "negative"),
            ("1", "no % sign: write \"1%\" (or the number 1.0)"),
            ("NaN%", "not a percentage"),
            ("inf%", "not a percentage"),
            ("1 percent", "not a percentage"),
        ];
        for (text, want) in bad {
            let err = percent(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(percent_value(f64::NAN, "NaN").is_err());
        assert!(percent_value(-0.1, "-0.1").is_err());
    }

    #[test]
    fn rates() {
        let ok = [
            ("8bit", 8),
            ("500kbit", 500_000),
            ("10mbit", 10_000_000),
            ("10Mbit", 10_000_000),
            ("1.5mbit", 1_500_000),
            ("1gbit", 1_000_000_000),
            ("2tbit", 2_000_000_000_000),
            ("1kibit", 1024),
            ("1mibit", 1 << 20),
            ("1000tbit", MAX_RATE_BITS),
        ];
        for (text, bits) in ok {
            assert_eq!(rate(text), Ok(bits), "{text}");
        }
        let bad = [
            ("10", "no unit"),
            ("0mbit", "zero"),
            ("4bit", "too slow"),
            ("1001tbit", "too fast"),
            ("1.5bit", "whole number of bits"),
            ("10mb", "unknown rate unit \"mb\""),
            (
                "10kbps",
                "tc reads \"10kbps\" as bytes per second (write \"80kbit\"), most people as bits per second (write \"10kbit\")",
            ),
            ("1.5Mbps", "(write \"12mbit\"), most people as bits per second (write \"1.5mbit\")"),
            ("-1mbit", "negative"),
        ];
        for (text, want) in bad {
            let err = rate(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("32kb"), Ok(32 * 1024));
        assert_eq!(size("32KiB"), Ok(32 * 1024));
        assert_eq!(size("1500b"), Ok(1500));
        assert_eq!(size("1.5mb"), Ok(1536 * 1024));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert!(size("32").unwrap_err().contains("no unit"));
        assert!(size("0.3b").unwrap_err().contains("whole number of bytes"));
        assert!(size("32kbit").unwrap_err().contains("unknown size unit"));
    }

    #[test]
    fn subnets() {
        let v4 = |a: [u8; 4], p| (IpAddr::from(a), p);
        assert_eq!(subnet("10.0.0.0/24", Some(254)), Ok(v4([10, 0, 0, 0], 24)));
        assert_eq!(subnet("10.0.0.0/30", Some(2)), Ok(v4([10, 0, 0, 0], 30)));
        assert_eq!(
            subnet("fd00::/64", Some(250)),
            Ok(("fd00::".parse().unwrap(), 64))
        );
        assert_eq!(
            subnet("fd00::/126", Some(3)),
            Ok(("fd00::".parse().unwrap(), 126))
        );
        let bad = [
            ("10.0.0.0", None, "no prefix length"),
            ("10.0.0/24", None, "not an IPv4 or IPv6 address"),
            ("10.0.0.0/x", None, "not a prefix length"),
            ("10.0.0.0/33", None, "longer than the address"),
            ("10.0.0.0/31", None, "fewer than two peers"),
            ("fd00::/127", None, "fewer than two peers"),
            ("10.0.0.5/24", None, "\"10.0.0.0/24\""),
            ("fd00::1/64", None, "\"fd00::/64\""),
            ("127.0.0.0/8", None, "loopback"),
            ("ff02::/64", None, "multicast"),
            (
                "10.0.0.0/24",
                Some(255),
                "holds 254 peers, and the test has 255",
            ),
            ("10.0.0.0/30", Some(3), "holds 2 peers"),
            ("fd00::/126", Some(4), "holds 3 peers"),
        ];
        for (text, peers, want) in bad {
            let err = subnet(text, peers).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(subnet("2001:db8::/32", Some(250)).is_ok());
    }

    proptest! {
        #[test]
        fn every_duration_reads_back(nanos in 0u64..=u64::MAX, unit in 0usize..DURATION_UNITS.len()) {
            let (name, factor) = DURATION_UNITS[unit];
            let whole = u128::from(nanos) / factor;
            let text = format!("{whole}{name}");
            let want = whole * factor;
            match duration(&text) {
                Ok(d) => prop_assert_eq!(d.as_nanos(), want),
                Err(e) => prop_assert!(want > u128::from(u64::MAX) && e.contains("too long"), "{text}: {e}"),
            }
        }

        #[test]
        fn fractions_are_exact(int in 0u64..1_000_000, frac in 0u32..1000) {
            let text = format!("{int}.{frac:03}ms");
            let want = u128::from(int) * 1_000_000 + u128::from(frac) * 1_000;
            prop_assert_eq!(duration(&text).map(|d| d.as_nanos()), Ok(want));
        }

        #[test]
        fn percents_in_range_are_accepted(thousandths in 0u32..=100_000) {
            let text = format!("{}.{:03}%", thousandths / 1000, thousandths % 1000);
            let value = percent(&text).unwrap();
            prop_assert!((value - f64::from(thousandths) / 1000.0).abs() < 1e-9);
        }

        #[test]
        fn percents_above_100_are_refused(thousandths in 100_001u32..10_000_000) {
            let text = format!("{}.{:03}%", thousandths / 1000, thousandths % 1000);
            prop_assert!(percent(&text).unwrap_err().contains("out of range"));
        }

        #[test]
        fn rates_read_back(bits in 8u64..=MAX_RATE_BITS) {
            let text = rate_text(u128::from(bits)).unwrap();
            prop_assert_eq!(rate(&text), Ok(bits));
            prop_assert_eq!(rate(&format!("{bits}bit")), Ok(bits));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,16}") {
            let _ = duration(&text);
            let _ = percent(&text);
            let _ = rate(&text);
            let _ = size(&text);
            let _ = subnet(&text, Some(3));
        }
    }
}
