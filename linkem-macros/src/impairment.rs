//! The keys of `all(..)` and `link(..)`: one table, [`KEYS`], says for each key the
//! field of linkem's `LinkImpairment` it sets, the builder method the expansion calls
//! and the kind of value it takes. Parsing, the checks and the expansion all read it;
//! `__impairment_keys!()` exposes it so that a test fails when the macro and the
//! library drift apart.

use std::collections::BTreeMap;
use std::time::Duration;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Error, Ident, Lit, Result};

use crate::diagnostics::{unknown_key, Errors};
use crate::syntax::{KeyValue, Value};
use crate::units;

/// The longest delay linkem accepts, as `linkem::tc::impairment::MAX_DELAY` (the test
/// in `tests/library.rs` keeps the two equal).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(3600);

/// What a key's value is, and how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A latency or jitter: at most [`MAX_DELAY`], whole microseconds.
    Delay,
    Distribution,
    Percent,
    LossModel,
    /// A number of packets, 0 allowed.
    Gap,
    /// Bits per second.
    Rate,
    /// The shaper's bucket, in bytes.
    Burst,
    QueueLatency,
    /// netem's queue, at least one packet.
    Limit,
    Seed,
}

/// One key of `all(..)` and `link(..)`.
#[derive(Debug)]
pub(crate) struct Key {
    /// The key as written.
    pub(crate) name: &'static str,
    /// Another name for it.
    alias: Option<&'static str>,
    /// The field of `LinkImpairment` it sets.
    pub(crate) field: &'static str,
    /// The `LinkImpairment` builder method the expansion calls.
    pub(crate) method: &'static str,
    kind: Kind,
}

const fn key(name: &'static str, field: &'static str, method: &'static str, kind: Kind) -> Key {
    Key {
        name,
        alias: None,
        field,
        method,
        kind,
    }
}

/// Every key, in the order the docs list them.
pub(crate) const KEYS: &[Key] = &[
    key("latency", "latency", "with_latency", Kind::Delay),
    key("jitter", "jitter", "with_jitter", Kind::Delay),
    key(
        "distribution",
        "jitter_distribution",
        "with_distribution",
        Kind::Distribution,
    ),
    key(
        "latency_correlation",
        "latency_correlation",
        "with_latency_correlation",
        Kind::Percent,
    ),
    key("loss", "loss", "with_loss", Kind::Percent),
    key(
        "loss_correlation",
        "loss_correlation",
        "with_loss_correlation",
        Kind::Percent,
    ),
    key(
        "loss_model",
        "loss_model",
        "with_loss_model",
        Kind::LossModel,
    ),
    key("duplicate", "duplicate", "with_duplicate", Kind::Percent),
    key(
        "duplicate_correlation",
        "duplicate_correlation",
        "with_duplicate_correlation",
        Kind::Percent,
    ),
    key("corrupt", "corrupt", "with_corrupt", Kind::Percent),
    key(
        "corrupt_correlation",
        "corrupt_correlation",
        "with_corrupt_correlation",
        Kind::Percent,
    ),
    key("reorder", "reorder", "with_reorder", Kind::Percent),
    key(
        "reorder_correlation",
        "reorder_correlation",
        "with_reorder_correlation",
        Kind::Percent,
    ),
    key("gap", "gap", "with_gap", Kind::Gap),
    Key {
        name: "rate",
        alias: Some("bandwidth"),
        field: "bandwidth_mbit_s",
        method: "with_rate",
        kind: Kind::Rate,
    },
    key("burst", "burst_kib", "with_burst", Kind::Burst),
    key(
        "queue_latency",
        "queue_latency",
        "with_queue_latency",
        Kind::QueueLatency,
    ),
    key("limit", "limit", "with_limit", Kind::Limit),
    key("netem_rate", "netem_rate", "with_netem_rate", Kind::Rate),
    key("seed", "seed", "with_seed", Kind::Seed),
];

/// Every name a key may be written with, aliases after their key.
fn key_names() -> impl Iterator<Item = &'static str> + Clone {
    KEYS.iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.alias))
}

/// The jitter distributions: name as written, variant of `linkem`'s `Distribution`.
pub(crate) const DISTRIBUTIONS: &[(&str, &str)] = &[
    ("uniform", "Uniform"),
    ("normal", "Normal"),
    ("pareto", "Pareto"),
    ("paretonormal", "ParetoNormal"),
];

/// A loss model of `loss_model = name(..)`: its parameters (the fields of the
/// `linkem` `LossModel` variant) with their defaults (`None`: required).
#[derive(Debug)]
pub(crate) struct Model {
    name: &'static str,
    /// The variant of `LossModel`.
    pub(crate) variant: &'static str,
    pub(crate) params: &'static [(&'static str, Option<f64>)],
    example: &'static str,
}

/// The loss models. The defaults are tc's: a bad state that loses everything, a good
/// one that loses nothing, and no isolated losses.
pub(crate) const MODELS: &[Model] = &[
    Model {
        name: "gemodel",
        variant: "GilbertElliott",
        params: &[
            ("p", None),
            ("r", None),
            ("bad_loss", Some(100.0)),
            ("good_loss", Some(0.0)),
        ],
        example: "gemodel(p = \"1%\", r = \"10%\")",
    },
    Model {
        name: "state",
        variant: "FourState",
        params: &[
            ("p13", None),
            ("p31", None),
            ("p32", Some(0.0)),
            ("p23", Some(0.0)),
            ("p14", Some(0.0)),
        ],
        example: "state(p13 = \"1%\", p31 = \"90%\")",
    },
];

/// A loss model, every parameter given or defaulted, in percent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LossModel {
    /// The variant of `LossModel`.
    pub(crate) variant: &'static str,
    /// Each field of the variant and its value, in the order of [`Model::params`].
    pub(crate) values: Vec<(&'static str, f64)>,
}

/// A key's value, checked and converted: durations, rates in bits per second, sizes in
/// bytes, percentages in percent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Setting {
    Duration(Duration),
    Percent(f64),
    /// The variant of `Distribution`.
    Distribution(&'static str),
    LossModel(LossModel),
    /// `gap`, `burst`, `limit`.
    Count(u32),
    /// Bits per second.
    Rate(u64),
    Seed(u64),
}

/// One impairment: the keys given, each with its checked value.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Impairment {
    /// By position in [`KEYS`], so the expansion is in the docs' order.
    settings: BTreeMap<usize, Setting>,
}

impl Impairment {
    /// The keys given and their values, in the order of [`KEYS`].
    pub(crate) fn settings(&self) -> impl Iterator<Item = (&'static Key, &Setting)> + '_ {
        self.settings.iter().map(|(&i, s)| (&KEYS[i], s))
    }

    /// The value of the key `name`, if given.
    fn get(&self, name: &str) -> Option<&Setting> {
        let index = KEYS.iter().position(|k| k.name == name)?;
        self.settings.get(&index)
    }

    /// Parses `key = value` pairs; every error is reported, not just the first.
    pub(crate) fn parse(keys: impl IntoIterator<Item = KeyValue>) -> Result<Impairment> {
        let mut imp = Impairment::default();
        let mut errors = Errors::default();
        // The span of each key given, by its canonical name, for the checks across keys.
        let mut given: BTreeMap<&'static str, (String, Span)> = BTreeMap::new();
        for kv in keys {
            let ident = kv.key.unraw();
            let name = ident.to_string();
            let Some(index) = KEYS
                .iter()
                .position(|k| k.name == name || k.alias == Some(name.as_str()))
            else {
                errors.push(unknown_key(&ident, "link key", key_names()));
                continue;
            };
            let key = &KEYS[index];
            if let Some((earlier, _)) = given.get(key.name) {
                errors.push(Error::new(
                    ident.span(),
                    if *earlier == name {
                        format!("duplicate key `{name}`")
                    } else {
                        format!("`{name}` and `{earlier}` are the same setting: give one of them")
                    },
                ));
                continue;
            }
            given.insert(key.name, (name, ident.span()));
            if let Some(setting) = errors.ok(setting(key.kind, &ident, &kv.value)) {
                imp.settings.insert(index, setting);
            }
        }

        // Checks across keys, on keys that are valid on their own (an invalid value is
        // left out of `imp`, and must not be reported again as missing).
        if errors.is_empty() {
            imp.check(&given, &mut errors);
        }
        errors.finish()?;
        Ok(imp)
    }

    /// The rules across keys that `LinkImpairment::validate` would otherwise only
    /// report at run time.
    fn check(&self, given: &BTreeMap<&'static str, (String, Span)>, errors: &mut Errors) {
        let span = |key: &str| given.get(key).map(|(_, span)| *span);
        let positive = |key: &str| match self.get(key) {
            Some(Setting::Percent(v)) => *v > 0.0,
            Some(Setting::Count(v)) => *v > 0,
            Some(Setting::Duration(d)) => !d.is_zero(),
            Some(_) => true,
            None => false,
        };
        if let (Some(at), true) = (span("loss_model"), positive("loss")) {
            errors.push(Error::new(
                at,
                "`loss` and `loss_model` exclude each other: netem keeps one loss generator \
                 (drop `loss`, or give the model a `good_loss`)",
            ));
        }
        for key in ["reorder", "gap"] {
            if let (Some(at), true, false) = (span(key), positive(key), positive("latency")) {
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
            if let (Some(at), None) = (span(key), self.get("rate")) {
                errors.push(Error::new(
                    at,
                    format!("`{key}` needs a `rate`: it is {why}"),
                ));
            }
        }
    }
}

/// The value of a key of kind `kind`, checked.
fn setting(kind: Kind, key: &Ident, value: &Value) -> Result<Setting> {
    Ok(match kind {
        Kind::Delay => Setting::Duration(delay(key, value)?),
        Kind::Distribution => Setting::Distribution(distribution(key, value)?),
        Kind::Percent => Setting::Percent(percent(key, value)?),
        Kind::LossModel => Setting::LossModel(loss_model(key, value)?),
        Kind::Gap => Setting::Count(value.int(key, "a number of packets (u32)")?),
        Kind::Rate => Setting::Rate(rate(key, value)?),
        Kind::Burst => Setting::Count(burst(key, value)?),
        Kind::QueueLatency => Setting::Duration(queue_latency(key, value)?),
        Kind::Limit => Setting::Count(limit(key, value)?),
        Kind::Seed => Setting::Seed(value.int(key, "an integer (u64)")?),
    })
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

fn distribution(key: &Ident, value: &Value) -> Result<&'static str> {
    let names: Vec<_> = DISTRIBUTIONS
        .iter()
        .map(|(n, _)| format!("\"{n}\""))
        .collect();
    let names = names.join(", ");
    let (text, span) = str_value(key, value, &format!("one of {names}"))?;
    DISTRIBUTIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&text))
        .map(|&(_, variant)| variant)
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
    let Some(model) = MODELS.iter().find(|m| name == m.name) else {
        return Err(Error::new(
            name.span(),
            format!("unknown loss model `{name}`: use {usage}"),
        ));
    };
    let mut values: BTreeMap<&str, f64> = BTreeMap::new();
    // Given, valid or not: an invalid one is reported as such, not again as missing.
    let mut given: Vec<&str> = Vec::new();
    let mut errors = Errors::default();
    for arg in args {
        let param = arg.key.unraw().to_string();
        let Some(&(param, _)) = model.params.iter().find(|(p, _)| *p == param) else {
            errors.push(unknown_key(
                &arg.key,
                &format!("`{name}` parameter"),
                model.params.iter().map(|(p, _)| *p),
            ));
            continue;
        };
        if given.contains(&param) {
            errors.push(Error::new(
                arg.key.span(),
                format!("duplicate key `{param}`"),
            ));
            continue;
        }
        given.push(param);
        if let Some(v) = errors.ok(percent(&arg.key, &arg.value)) {
            values.insert(param, v);
        }
    }
    for &(param, default) in model.params {
        if !given.contains(&param) && default.is_none() {
            errors.push(Error::new(
                name.span(),
                format!("`{name}` needs `{param}`: write e.g. `{}`", model.example),
            ));
        }
    }
    errors.finish()?;
    let values = model
        .params
        .iter()
        .map(|&(param, default)| {
            let value = values.get(param).copied().or(default);
            (param, value.expect("a missing parameter is refused above"))
        })
        .collect();
    Ok(LossModel {
        variant: model.variant,
        values,
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

    fn settings(imp: &Impairment) -> Vec<(&'static str, Setting)> {
        imp.settings().map(|(k, s)| (k.name, s.clone())).collect()
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
        use Setting::*;
        assert_eq!(
            settings(&imp),
            [
                ("latency", Duration(std::time::Duration::from_millis(100))),
                ("jitter", Duration(std::time::Duration::from_millis(10))),
                ("distribution", Distribution("ParetoNormal")),
                ("latency_correlation", Percent(25.0)),
                ("loss", Percent(1.5)),
                ("loss_correlation", Percent(10.0)),
                ("duplicate", Percent(0.1)),
                ("duplicate_correlation", Percent(5.0)),
                ("corrupt", Percent(0.01)),
                ("corrupt_correlation", Percent(1.0)),
                ("reorder", Percent(25.0)),
                ("reorder_correlation", Percent(50.0)),
                ("gap", Count(5)),
                ("rate", Rate(1_500_000)),
                ("burst", Count(32 * 1024)),
                (
                    "queue_latency",
                    Duration(std::time::Duration::from_millis(50))
                ),
                ("limit", Count(5000)),
                ("netem_rate", Rate(100_000_000)),
                ("seed", Seed(42)),
            ]
        );
        let unset: Vec<_> = KEYS
            .iter()
            .filter(|k| imp.get(k.name).is_none())
            .map(|k| k.name)
            .collect();
        assert_eq!(unset, ["loss_model"], "every other key was given");
    }

    #[test]
    fn the_table_is_consistent() {
        let mut names: Vec<_> = key_names().collect();
        let mut fields: Vec<_> = KEYS.iter().map(|k| k.field).collect();
        names.sort();
        fields.sort();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
        assert!(fields.windows(2).all(|w| w[0] != w[1]), "{fields:?}");
        for key in KEYS {
            assert!(key.method.starts_with("with_"), "{key:?}");
        }
    }

    #[test]
    fn loss_models() {
        let model = |tokens| match parse(tokens).unwrap().get("loss_model") {
            Some(Setting::LossModel(model)) => model.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            model(quote!(loss_model = gemodel(p = "1%", r = "10%"))),
            LossModel {
                variant: "GilbertElliott",
                values: vec![
                    ("p", 1.0),
                    ("r", 10.0),
                    ("bad_loss", 100.0),
                    ("good_loss", 0.0)
                ],
            }
        );
        assert_eq!(
            model(quote!(
                loss_model = state(p13 = 5.0, p31 = "80%", p14 = "0.5%")
            )),
            LossModel {
                variant: "FourState",
                values: vec![
                    ("p13", 5.0),
                    ("p31", 80.0),
                    ("p32", 0.0),
                    ("p23", 0.0),
                    ("p14", 0.5)
                ],
            }
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
