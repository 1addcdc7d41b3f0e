//! The keys of `all(..)` and `link(..)`: one per setting of linkem's `LinkImpairment`,
//! each checked and converted where it is written, then the rules across keys that
//! `LinkImpairment::validate` would otherwise only report at run time.

use std::collections::BTreeMap;
use std::time::Duration;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Error, Ident, Lit, Result};

use crate::attr::{unknown_key, Errors, KeyValue, Value};
use crate::units;

/// The keys, in the order the docs list them. `bandwidth` is another name for `rate`.
pub(crate) const KEYS: &[&str] = &[
    "latency",
    "jitter",
    "distribution",
    "latency_correlation",
    "loss",
    "loss_correlation",
    "loss_model",
    "duplicate",
    "duplicate_correlation",
    "corrupt",
    "corrupt_correlation",
    "reorder",
    "reorder_correlation",
    "gap",
    "rate",
    "bandwidth",
    "burst",
    "queue_latency",
    "limit",
    "netem_rate",
    "seed",
];

/// The longest delay linkem accepts (`linkem::tc::impairment::MAX_DELAY`).
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// `linkem::tc::impairment::Distribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distribution {
    Uniform,
    Normal,
    Pareto,
    ParetoNormal,
}

const DISTRIBUTIONS: &[(&str, Distribution)] = &[
    ("uniform", Distribution::Uniform),
    ("normal", Distribution::Normal),
    ("pareto", Distribution::Pareto),
    ("paretonormal", Distribution::ParetoNormal),
];

/// `linkem::tc::impairment::LossModel`, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LossModel {
    GilbertElliott {
        p: f64,
        r: f64,
        bad_loss: f64,
        good_loss: f64,
    },
    FourState {
        p13: f64,
        p31: f64,
        p32: f64,
        p23: f64,
        p14: f64,
    },
}

/// The parameters of each loss model, with their defaults (`None`: required). The
/// defaults are tc's: a bad state that loses everything, a good one that loses nothing,
/// and no isolated losses.
const GEMODEL: &[(&str, Option<f64>)] = &[
    ("p", None),
    ("r", None),
    ("bad_loss", Some(100.0)),
    ("good_loss", Some(0.0)),
];
const STATE: &[(&str, Option<f64>)] = &[
    ("p13", None),
    ("p31", None),
    ("p32", Some(0.0)),
    ("p23", Some(0.0)),
    ("p14", Some(0.0)),
];

/// One impairment, every value converted: durations, rates in bits per second, sizes
/// in bytes, percentages in percent.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Impairment {
    pub(crate) latency: Option<Duration>,
    pub(crate) jitter: Option<Duration>,
    pub(crate) distribution: Option<Distribution>,
    pub(crate) latency_correlation: Option<f64>,
    pub(crate) loss: Option<f64>,
    pub(crate) loss_correlation: Option<f64>,
    pub(crate) loss_model: Option<LossModel>,
    pub(crate) duplicate: Option<f64>,
    pub(crate) duplicate_correlation: Option<f64>,
    pub(crate) corrupt: Option<f64>,
    pub(crate) corrupt_correlation: Option<f64>,
    pub(crate) reorder: Option<f64>,
    pub(crate) reorder_correlation: Option<f64>,
    pub(crate) gap: Option<u32>,
    pub(crate) rate: Option<u64>,
    pub(crate) burst: Option<u32>,
    pub(crate) queue_latency: Option<Duration>,
    pub(crate) limit: Option<u32>,
    pub(crate) netem_rate: Option<u64>,
    pub(crate) seed: Option<u64>,
}

impl Impairment {
    /// Parses `key = value` pairs; every error is reported, not just the first.
    pub(crate) fn parse(keys: impl IntoIterator<Item = KeyValue>) -> Result<Impairment> {
        let mut imp = Impairment::default();
        let mut errors = Errors::default();
        // The span of each key given, by its canonical name, for the checks across keys.
        let mut given: BTreeMap<&'static str, (String, Span)> = BTreeMap::new();
        for kv in keys {
            let key = kv.key.unraw();
            let name = key.to_string();
            let Some(canonical) = KEYS.iter().copied().find(|k| *k == name) else {
                errors.push(unknown_key(&key, "link key", KEYS.iter().copied()));
                continue;
            };
            let canonical = if canonical == "bandwidth" {
                "rate"
            } else {
                canonical
            };
            if let Some((earlier, _)) = given.get(canonical) {
                errors.push(Error::new(
                    key.span(),
                    if *earlier == name {
                        format!("duplicate key `{name}`")
                    } else {
                        format!("`{name}` and `{earlier}` are the same setting: give one of them")
                    },
                ));
                continue;
            }
            given.insert(canonical, (name, key.span()));
            let value = &kv.value;
            let set = match canonical {
                "latency" => delay(&key, value).map(|v| imp.latency = Some(v)),
                "jitter" => delay(&key, value).map(|v| imp.jitter = Some(v)),
                "distribution" => distribution(&key, value).map(|v| imp.distribution = Some(v)),
                "latency_correlation" => {
                    percent(&key, value).map(|v| imp.latency_correlation = Some(v))
                }
                "loss" => percent(&key, value).map(|v| imp.loss = Some(v)),
                "loss_correlation" => percent(&key, value).map(|v| imp.loss_correlation = Some(v)),
                "loss_model" => loss_model(&key, value).map(|v| imp.loss_model = Some(v)),
                "duplicate" => percent(&key, value).map(|v| imp.duplicate = Some(v)),
                "duplicate_correlation" => {
                    percent(&key, value).map(|v| imp.duplicate_correlation = Some(v))
                }
                "corrupt" => percent(&key, value).map(|v| imp.corrupt = Some(v)),
                "corrupt_correlation" => {
                    percent(&key, value).map(|v| imp.corrupt_correlation = Some(v))
                }
                "reorder" => percent(&key, value).map(|v| imp.reorder = Some(v)),
                "reorder_correlation" => {
                    percent(&key, value).map(|v| imp.reorder_correlation = Some(v))
                }
                "gap" => value
                    .int(&key, "a number of packets (u32)")
                    .map(|v| imp.gap = Some(v)),
                "rate" => rate(&key, value).map(|v| imp.rate = Some(v)),
                "burst" => burst(&key, value).map(|v| imp.burst = Some(v)),
                "queue_latency" => queue_latency(&key, value).map(|v| imp.queue_latency = Some(v)),
                "limit" => limit(&key, value).map(|v| imp.limit = Some(v)),
                "netem_rate" => rate(&key, value).map(|v| imp.netem_rate = Some(v)),
                "seed" => value
                    .int(&key, "an integer (u64)")
                    .map(|v| imp.seed = Some(v)),
                _ => unreachable!("every key of KEYS is handled"),
            };
            errors.ok(set);
        }

        // Checks across keys, on keys that are valid on their own (an invalid value is
        // left out of `imp`, and must not be reported again as missing).
        if errors.is_empty() {
            imp.check(&given, &mut errors);
        }
        errors.finish()?;
        Ok(imp)
    }

    fn check(&self, given: &BTreeMap<&'static str, (String, Span)>, errors: &mut Errors) {
        let imp = self;
        let span = |key: &str| given.get(key).map(|(_, span)| *span);
        let positive = |v: Option<f64>| v.is_some_and(|v| v > 0.0);
        if let (Some(at), true) = (span("loss_model"), positive(imp.loss)) {
            errors.push(Error::new(
                at,
                "`loss` and `loss_model` exclude each other: netem keeps one loss generator \
                 (drop `loss`, or give the model a `good_loss`)",
            ));
        }
        let has_latency = imp.latency.is_some_and(|d| !d.is_zero());
        for key in ["reorder", "gap"] {
            let set = match key {
                "reorder" => positive(imp.reorder),
                _ => imp.gap.is_some_and(|g| g > 0),
            };
            if let (Some(at), true, false) = (span(key), set, has_latency) {
                errors.push(Error::new(
                    at,
                    format!(
                        "`{key}` needs a `latency`: netem reorders by sending some packets \
                         without the delay the others get"
                    ),
                ));
            }
        }
        for (key, why) in [
            ("burst", "the size of the shaper's bucket"),
            (
                "queue_latency",
                "how long a packet may wait in the shaper's queue",
            ),
        ] {
            if let (Some(at), None) = (span(key), imp.rate) {
                errors.push(Error::new(
                    at,
                    format!("`{key}` needs a `rate`: it is {why}"),
                ));
            }
        }
    }
}

fn str_value(key: &Ident, value: &Value, want: &str) -> Result<(String, Span)> {
    let lit = value.str(key, want)?;
    Ok((lit.value(), lit.span()))
}

/// A latency or jitter: at most an hour, in whole microseconds (the unit of
/// `LinkImpairment`'s delay fields).
fn delay(key: &Ident, value: &Value) -> Result<Duration> {
    let (text, span) = str_value(key, value, "a duration string, e.g. \"100ms\"")?;
    let d = units::duration(&text).map_err(|e| Error::new(span, e))?;
    if d > MAX_DELAY {
        return Err(Error::new(
            span,
            format!("`{key}` must be at most 1h, not \"{text}\""),
        ));
    }
    if !d.subsec_nanos().is_multiple_of(1_000) {
        return Err(Error::new(
            span,
            format!("`{key}` \"{text}\" is not a whole number of microseconds, netem's unit"),
        ));
    }
    Ok(d)
}

fn queue_latency(key: &Ident, value: &Value) -> Result<Duration> {
    let (text, span) = str_value(key, value, "a duration string, e.g. \"50ms\"")?;
    let d = units::duration(&text).map_err(|e| Error::new(span, e))?;
    if d.is_zero() || d > MAX_DELAY {
        return Err(Error::new(
            span,
            format!("`{key}` must be above 0 and at most 1h, not \"{text}\""),
        ));
    }
    Ok(d)
}

/// `"1%"`, or a number in percent (`1.0`, `1`).
fn percent(key: &Ident, value: &Value) -> Result<f64> {
    let want = "a percentage, e.g. \"1%\" or 1.0";
    let number = match value {
        Value::Lit {
            minus: None,
            lit: Lit::Str(s),
        } => return units::percent(&s.value()).map_err(|e| Error::new(s.span(), e)),
        Value::Lit {
            minus: Some(_),
            lit: Lit::Float(_) | Lit::Int(_),
        } => {
            return Err(Error::new_spanned(
                value,
                format!("`{key}` cannot be negative: it is a percentage within 0%..=100%"),
            ))
        }
        Value::Lit {
            minus: None,
            lit: Lit::Float(f),
        } => f.base10_parse::<f64>()?,
        Value::Lit {
            minus: None,
            lit: Lit::Int(i),
        } => i.base10_parse::<u64>()? as f64,
        _ => return Err(value.expected(key, want)),
    };
    let text = match value {
        Value::Lit { lit, .. } => quote::ToTokens::to_token_stream(lit).to_string(),
        _ => String::new(),
    };
    units::percent_value(number, &text).map_err(|e| Error::new_spanned(value, e))
}

fn rate(key: &Ident, value: &Value) -> Result<u64> {
    let (text, span) = str_value(key, value, "a rate string, e.g. \"10mbit\"")?;
    units::rate(&text).map_err(|e| Error::new(span, e))
}

/// The shaper's bucket: a size string or a number of bytes, up to what a `u32` holds.
fn burst(key: &Ident, value: &Value) -> Result<u32> {
    let (bytes, span) = match value {
        Value::Lit {
            minus: None,
            lit: Lit::Str(s),
        } => (
            units::size(&s.value()).map_err(|e| Error::new(s.span(), e))?,
            s.span(),
        ),
        Value::Lit {
            minus: None,
            lit: Lit::Int(i),
        } => (i.base10_parse()?, i.span()),
        _ => return Err(value.expected(key, "a size, e.g. \"32kb\" or a number of bytes")),
    };
    match u32::try_from(bytes) {
        Ok(b) if b > 0 => Ok(b),
        _ => Err(Error::new(
            span,
            format!("`{key}` must be between 1 byte and 4gb, not {bytes} bytes"),
        )),
    }
}

fn limit(key: &Ident, value: &Value) -> Result<u32> {
    let packets: u32 = value.int(key, "a number of packets (u32)")?;
    if packets == 0 {
        return Err(Error::new_spanned(
            value,
            "`limit` must be at least 1 packet: netem drops everything with 0",
        ));
    }
    Ok(packets)
}

fn distribution(key: &Ident, value: &Value) -> Result<Distribution> {
    let names: Vec<_> = DISTRIBUTIONS
        .iter()
        .map(|(n, _)| format!("\"{n}\""))
        .collect();
    let names = names.join(", ");
    let (text, span) = str_value(key, value, &format!("one of {names}"))?;
    DISTRIBUTIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&text))
        .map(|&(_, d)| d)
        .ok_or_else(|| {
            Error::new(
                span,
                format!("unknown distribution \"{text}\": use one of {names}"),
            )
        })
}

/// `gemodel(p = "1%", r = "10%", bad_loss = "100%", good_loss = "0%")` or
/// `state(p13 = "1%", p31 = "90%", p32 = "0%", p23 = "0%", p14 = "0%")`.
fn loss_model(key: &Ident, value: &Value) -> Result<LossModel> {
    let usage = "`gemodel(p = \"1%\", r = \"10%\")` or `state(p13 = \"1%\", p31 = \"90%\")`";
    let Value::Call { name, args, .. } = value else {
        return Err(value.expected(key, usage));
    };
    let (params, example) = match name.to_string().as_str() {
        "gemodel" => (GEMODEL, "gemodel(p = \"1%\", r = \"10%\")"),
        "state" => (STATE, "state(p13 = \"1%\", p31 = \"90%\")"),
        _ => {
            return Err(Error::new(
                name.span(),
                format!("unknown loss model `{name}`: use {usage}"),
            ))
        }
    };
    let mut values: BTreeMap<&str, f64> = BTreeMap::new();
    let mut errors = Errors::default();
    for arg in args {
        let param = arg.key.unraw().to_string();
        let Some(&(param, _)) = params.iter().find(|(p, _)| *p == param) else {
            errors.push(unknown_key(
                &arg.key,
                &format!("`{name}` parameter"),
                params.iter().map(|(p, _)| *p),
            ));
            continue;
        };
        if values.contains_key(param) {
            errors.push(Error::new(
                arg.key.span(),
                format!("duplicate key `{param}`"),
            ));
            continue;
        }
        if let Some(v) = errors.ok(percent(&arg.key, &arg.value)) {
            values.insert(param, v);
        }
    }
    errors.finish()?;
    let get = |param: &str| -> Result<f64> {
        let default = params
            .iter()
            .find(|(p, _)| *p == param)
            .and_then(|(_, d)| *d);
        values.get(param).copied().or(default).ok_or_else(|| {
            Error::new(
                name.span(),
                format!("`{name}` needs `{param}`: write e.g. `{example}`"),
            )
        })
    };
    Ok(match params.len() {
        4 => LossModel::GilbertElliott {
            p: get("p")?,
            r: get("r")?,
            bad_loss: get("bad_loss")?,
            good_loss: get("good_loss")?,
        },
        _ => LossModel::FourState {
            p13: get("p13")?,
            p31: get("p31")?,
            p32: get("p32")?,
            p23: get("p23")?,
            p14: get("p14")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenStream;
    use quote::quote;
    use syn::parse::Parser;
    use syn::punctuated::Punctuated;
    use syn::Token;

    fn parse(tokens: TokenStream) -> Result<Impairment> {
        let keys = Punctuated::<KeyValue, Token![,]>::parse_terminated.parse2(tokens)?;
        Impairment::parse(keys)
    }

    #[test]
    fn every_key() {
        let imp = parse(quote! {
            latency = "100ms", jitter = "10ms", distribution = "paretonormal",
            latency_correlation = "25%", loss = 1.5, loss_correlation = 10,
            duplicate = "0.1%", duplicate_correlation = "5%", corrupt = "0.01%",
            corrupt_correlation = "1%", reorder = "25%", reorder_correlation = "50%", gap = 5,
            bandwidth = "1.5mbit", burst = "32kb", queue_latency = "50ms", limit = 5000,
            netem_rate = "100mbit", seed = 42,
        })
        .unwrap();
        assert_eq!(
            imp,
            Impairment {
                latency: Some(Duration::from_millis(100)),
                jitter: Some(Duration::from_millis(10)),
                distribution: Some(Distribution::ParetoNormal),
                latency_correlation: Some(25.0),
                loss: Some(1.5),
                loss_correlation: Some(10.0),
                loss_model: None,
                duplicate: Some(0.1),
                duplicate_correlation: Some(5.0),
                corrupt: Some(0.01),
                corrupt_correlation: Some(1.0),
                reorder: Some(25.0),
                reorder_correlation: Some(50.0),
                gap: Some(5),
                rate: Some(1_500_000),
                burst: Some(32 * 1024),
                queue_latency: Some(Duration::from_millis(50)),
                limit: Some(5000),
                netem_rate: Some(100_000_000),
                seed: Some(42),
            }
        );
    }

    #[test]
    fn loss_models() {
        let imp = parse(quote!(loss_model = gemodel(p = "1%", r = "10%"))).unwrap();
        assert_eq!(
            imp.loss_model,
            Some(LossModel::GilbertElliott {
                p: 1.0,
                r: 10.0,
                bad_loss: 100.0,
                good_loss: 0.0
            })
        );
        let imp = parse(quote!(
            loss_model = state(p13 = 5.0, p31 = "80%", p14 = "0.5%")
        ))
        .unwrap();
        assert_eq!(
            imp.loss_model,
            Some(LossModel::FourState {
                p13: 5.0,
                p31: 80.0,
                p32: 0.0,
                p23: 0.0,
                p14: 0.5
            })
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                quote!(latncy = "1ms"),
                "unknown link key `latncy` (did you mean `latency`?)",
            ),
            (
                quote!(latency = "1ms", latency = "2ms"),
                "duplicate key `latency`",
            ),
            (
                quote!(rate = "1mbit", bandwidth = "2mbit"),
                "`bandwidth` and `rate` are the same setting",
            ),
            (quote!(latency = 100), "`latency` expects a duration string"),
            (quote!(latency = "2h"), "at most 1h"),
            (quote!(latency = "1500ns"), "whole number of microseconds"),
            (quote!(loss = "150%"), "out of range"),
            (quote!(loss = 150.0), "out of range"),
            (quote!(loss = -1.0), "cannot be negative"),
            (quote!(loss = "NaN"), "not a percentage"),
            (
                quote!(distribution = "gaussian"),
                "unknown distribution \"gaussian\"",
            ),
            (
                quote!(loss = "1%", loss_model = gemodel(p = "1%", r = "1%")),
                "exclude each other",
            ),
            (
                quote!(loss_model = gemodel(p = "1%")),
                "`gemodel` needs `r`",
            ),
            (
                quote!(loss_model = gemodel(p = "1%", q = "1%")),
                "unknown `gemodel` parameter `q`",
            ),
            (
                quote!(loss_model = markov(p = "1%")),
                "unknown loss model `markov`",
            ),
            (
                quote!(loss_model = "gemodel"),
                "`loss_model` expects `gemodel(",
            ),
            (quote!(reorder = "10%"), "`reorder` needs a `latency`"),
            (
                quote!(gap = 5, reorder = "10%", latency = "0ms"),
                "`gap` needs a `latency`",
            ),
            (quote!(burst = "32kb"), "`burst` needs a `rate`"),
            (
                quote!(queue_latency = "10ms", rate = "1mbit", burst = 0),
                "between 1 byte and 4gb",
            ),
            (
                quote!(queue_latency = "10ms"),
                "`queue_latency` needs a `rate`",
            ),
            (quote!(limit = 0), "at least 1 packet"),
            (quote!(rate = "10kbps"), "ambiguous"),
            (quote!(gap = -1), "cannot be negative"),
        ];
        for (tokens, want) in cases {
            let text = tokens.to_string();
            let err = match parse(tokens) {
                Ok(imp) => panic!("{text}: accepted as {imp:?}"),
                Err(e) => e
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
