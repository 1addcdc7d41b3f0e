//! The attribute's arguments: first their syntax ([`Arg`], [`Value`]), then a typed
//! [`Config`] built key by key, each value checked where it is written, and the checks
//! across keys (peer numbers, links, subnet size) in one [`Builder::build`] step.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{token, Error, Ident, Lit, LitInt, LitStr, Path, Result, Token};

use crate::impairment::Impairment;
use crate::units;

/// The most peers a test may have.
pub(crate) const MAX_PEERS: usize = 250;

/// The keys of the attribute, each with how it is written.
const KEYS: &[(&str, &str)] = &[
    ("peers", "peers = 3"),
    ("subnet", "subnet = \"10.0.0.0/24\""),
    ("timeout", "timeout = \"30s\""),
    ("seed", "seed = 42"),
    ("parallel", "parallel"),
    ("serial", "serial = false"),
    ("ignore", "ignore = \"why\""),
    ("netem", "netem"),
    ("crate", "crate = \"path::to::linkem\""),
    ("all", "all(latency = \"10ms\", ..)"),
    (
        "link",
        "link(1, 2, latency = \"10ms\", ..)` or `link(1 -> 2, ..)",
    ),
    ("peer", "peer(1, path::to::body)"),
];

// ---------------------------------------------------------------------------------
// Syntax

/// A value after `=`: a literal (possibly negated, to refuse it precisely), a path, or
/// a call with keyed arguments (`gemodel(p = "1%", r = "10%")`).
pub(crate) enum Value {
    Lit {
        minus: Option<Token![-]>,
        lit: Lit,
    },
    Path(Path),
    Call {
        name: Ident,
        paren: token::Paren,
        args: Punctuated<KeyValue, Token![,]>,
    },
}

impl Parse for Value {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        if input.peek(Token![-]) || input.peek(Lit) {
            Ok(Value::Lit {
                minus: input.parse()?,
                lit: input.parse()?,
            })
        } else if input.peek(Ident) && input.peek2(token::Paren) {
            let content;
            Ok(Value::Call {
                name: input.parse()?,
                paren: syn::parenthesized!(content in input),
                args: content.parse_terminated(KeyValue::parse, Token![,])?,
            })
        } else if input.peek(Ident::peek_any) || input.peek(Token![::]) {
            Ok(Value::Path(input.call(Path::parse_mod_style)?))
        } else {
            Err(input.error("expected a value: a literal such as \"100ms\", 1.0 or 3"))
        }
    }
}

impl ToTokens for Value {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Value::Lit { minus, lit } => {
                minus.to_tokens(tokens);
                lit.to_tokens(tokens);
            }
            Value::Path(path) => path.to_tokens(tokens),
            Value::Call { name, paren, args } => {
                name.to_tokens(tokens);
                paren.surround(tokens, |tokens| args.to_tokens(tokens));
            }
        }
    }
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Lit {
                lit: Lit::Str(_), ..
            } => "a string",
            Value::Lit {
                lit: Lit::Int(_), ..
            } => "an integer",
            Value::Lit {
                lit: Lit::Float(_), ..
            } => "a float",
            Value::Lit {
                lit: Lit::Bool(_), ..
            } => "a bool",
            Value::Lit { .. } => "a literal",
            Value::Path(_) => "a path",
            Value::Call { .. } => "a call",
        }
    }

    /// An error for a value of the wrong kind: "expected {want}, found a float".
    pub(crate) fn expected(&self, key: &Ident, want: &str) -> Error {
        Error::new_spanned(
            self,
            format!("`{key}` expects {want}, found {}", self.describe()),
        )
    }

    /// The string literal, or an error naming what was expected.
    pub(crate) fn str(&self, key: &Ident, want: &str) -> Result<&LitStr> {
        match self {
            Value::Lit {
                minus: None,
                lit: Lit::Str(s),
            } => Ok(s),
            _ => Err(self.expected(key, want)),
        }
    }

    /// A non-negative integer that fits `T`.
    pub(crate) fn int<T>(&self, key: &Ident, want: &str) -> Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self {
            Value::Lit {
                minus: Some(_),
                lit: Lit::Int(_),
            } => Err(Error::new_spanned(
                self,
                format!("`{key}` cannot be negative"),
            )),
            Value::Lit {
                minus: None,
                lit: Lit::Int(int),
            } => int
                .base10_parse()
                .map_err(|e| Error::new_spanned(int, format!("`{key}` expects {want}: {e}"))),
            _ => Err(self.expected(key, want)),
        }
    }

    /// A bool literal.
    fn bool(&self, key: &Ident) -> Result<bool> {
        match self {
            Value::Lit {
                minus: None,
                lit: Lit::Bool(b),
            } => Ok(b.value),
            _ => Err(self.expected(key, "`true` or `false`")),
        }
    }
}

/// `key = value`.
pub(crate) struct KeyValue {
    pub(crate) key: Ident,
    pub(crate) eq: Token![=],
    pub(crate) value: Value,
}

impl Parse for KeyValue {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        Ok(KeyValue {
            key: input.call(Ident::parse_any)?,
            eq: input.parse()?,
            value: input.parse()?,
        })
    }
}

impl ToTokens for KeyValue {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.key.to_tokens(tokens);
        self.eq.to_tokens(tokens);
        self.value.to_tokens(tokens);
    }
}

/// One argument of the attribute: `key`, `key = value` or `key(...)`.
enum Arg {
    Flag(Ident),
    Value(KeyValue),
    /// The parenthesized group, parsed once the key is known.
    List {
        key: Ident,
        group: Group,
    },
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        let key = input.call(Ident::parse_any).map_err(|e| {
            Error::new(
                e.span(),
                "expected a key such as `peers = 3` or `link(1, 2, ..)`",
            )
        })?;
        if input.peek(Token![=]) {
            Ok(Arg::Value(KeyValue {
                key,
                eq: input.parse()?,
                value: input.parse()?,
            }))
        } else if input.peek(token::Paren) {
            Ok(Arg::List {
                key,
                group: input.parse()?,
            })
        } else {
            Ok(Arg::Flag(key))
        }
    }
}

impl Arg {
    fn key(&self) -> &Ident {
        match self {
            Arg::Flag(key) | Arg::List { key, .. } => key,
            Arg::Value(kv) => &kv.key,
        }
    }
}

/// Parses the inside of `group` with `parser`. The group keeps its span, so an error at
/// the end of the arguments points at their closing parenthesis.
fn parse_group<T>(group: Group, parser: impl FnOnce(ParseStream<'_>) -> Result<T>) -> Result<T> {
    let parse = |input: ParseStream<'_>| {
        let content;
        syn::parenthesized!(content in input);
        parser(&content)
    };
    parse.parse2(TokenStream::from(TokenTree::Group(group)))
}

/// `link(a, b, key = value, ..)` or `link(a -> b, ..)`.
struct LinkArgs {
    from: LitInt,
    arrow: Option<Token![->]>,
    to: LitInt,
    keys: Vec<KeyValue>,
}

impl Parse for LinkArgs {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        let peers = "expected the link's two peers: `link(1, 2, ..)` for both directions, \
                     or `link(1 -> 2, ..)` for one";
        let from: LitInt = input.parse().map_err(|e| Error::new(e.span(), peers))?;
        let arrow: Option<Token![->]> = input.parse()?;
        if arrow.is_none() {
            input
                .parse::<Token![,]>()
                .map_err(|e| Error::new(e.span(), peers))?;
        }
        let to: LitInt = input.parse().map_err(|e| Error::new(e.span(), peers))?;
        let mut keys = Vec::new();
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            keys.push(input.parse()?);
        }
        Ok(LinkArgs {
            from,
            arrow,
            to,
            keys,
        })
    }
}

/// `peer(n, path::to::body)`.
struct PeerArgs {
    peer: LitInt,
    body: Path,
}

impl Parse for PeerArgs {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        let usage = "expected `peer(N, path::to::body)`";
        let peer = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        input
            .parse::<Token![,]>()
            .map_err(|e| Error::new(e.span(), usage))?;
        let body = input
            .call(Path::parse_mod_style)
            .map_err(|e| Error::new(e.span(), usage))?;
        input.parse::<Option<Token![,]>>()?;
        if !input.is_empty() {
            return Err(input.error(usage));
        }
        Ok(PeerArgs { peer, body })
    }
}

// ---------------------------------------------------------------------------------
// Errors

/// Errors gathered across keys, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value, or `None` after keeping its error.
    pub(crate) fn ok<T>(&mut self, result: Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn finish(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// "unknown key `x` (did you mean `y`?); the keys are: a, b, c".
pub(crate) fn unknown_key<'a>(
    key: &Ident,
    what: &str,
    valid: impl IntoIterator<Item = &'a str> + Clone,
) -> Error {
    let name = key.unraw().to_string();
    let close = valid
        .clone()
        .into_iter()
        .map(|v| (edit_distance(&name, v), v))
        .filter(|&(d, v)| d <= (v.len() / 3).max(1))
        .min();
    let hint = close.map_or(String::new(), |(_, v)| format!(" (did you mean `{v}`?)"));
    let valid: Vec<_> = valid.into_iter().collect();
    Error::new(
        key.span(),
        format!(
            "unknown {what} `{name}`{hint}; expected one of: {}",
            valid.join(", ")
        ),
    )
}

/// Edits (insertion, deletion, substitution, swap of neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

// ---------------------------------------------------------------------------------
// The typed configuration

/// One direction (or both) of a link, checked.
pub(crate) struct LinkConfig {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) both: bool,
    pub(crate) impairment: Impairment,
}

/// Everything the attribute says, checked and converted.
pub(crate) struct Config {
    pub(crate) peers: usize,
    pub(crate) subnet: Option<(IpAddr, u8)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) seed: Option<u64>,
    pub(crate) parallel: bool,
    /// `Some(None)`: ignored without a reason.
    pub(crate) ignore: Option<Option<String>>,
    /// The test needs sch_netem (for a test that builds its own networks; the harness
    /// sees it from the links otherwise).
    pub(crate) netem: bool,
    pub(crate) krate: Option<Path>,
    pub(crate) all: Option<Impairment>,
    pub(crate) links: Vec<LinkConfig>,
    pub(crate) bodies: BTreeMap<usize, Path>,
}

struct RawLink {
    from: LitInt,
    arrow: Option<Token![->]>,
    to: LitInt,
    impairment: Impairment,
}

/// The keys as given, before the checks across keys.
#[derive(Default)]
struct Builder {
    /// Whether a key was not recognised (then a missing `peers` goes unsaid: the
    /// unknown key may be it, misspelled).
    unknown_keys: bool,
    /// The keys given so far (by slot: `serial` is `parallel`).
    seen: BTreeMap<String, String>,
    /// Where each key was first given (repeatable ones included).
    spans: BTreeMap<String, Span>,
    peers: Option<usize>,
    subnet: Option<LitStr>,
    timeout: Option<Duration>,
    seed: Option<u64>,
    parallel: Option<bool>,
    ignore: Option<Option<String>>,
    netem: bool,
    krate: Option<Path>,
    all: Option<Impairment>,
    links: Vec<RawLink>,
    bodies: Vec<PeerArgs>,
}

/// Parses and checks the attribute's arguments.
///
/// A `standalone` test (an `async fn` without arguments) builds its own networks: it
/// takes no `peers` and none of the keys that describe the harness-built network.
pub(crate) fn parse(args: TokenStream, standalone: bool) -> Result<Config> {
    let args = Punctuated::<Arg, Token![,]>::parse_terminated.parse2(args)?;
    let mut builder = Builder::default();
    let mut errors = Errors::default();
    for arg in args {
        if let Err(e) = builder.add(arg) {
            errors.push(e);
        }
    }
    if standalone {
        builder.standalone(&mut errors);
    }
    let config = builder.build(&mut errors);
    errors.finish()?;
    config.ok_or_else(|| Error::new(Span::call_site(), "invalid #[linkem::test] attribute"))
}

impl Builder {
    fn add(&mut self, arg: Arg) -> Result<()> {
        let key = arg.key().unraw();
        let name = key.to_string();
        let Some(&(_, usage)) = KEYS.iter().find(|(k, _)| *k == name) else {
            self.unknown_keys = true;
            return Err(unknown_key(&key, "key", KEYS.iter().map(|(k, _)| *k)));
        };
        self.spans.entry(name.clone()).or_insert(key.span());
        let repeatable = matches!(name.as_str(), "link" | "peer");
        if !repeatable {
            // `parallel` and `serial` say the same thing: once.
            let slot = if name == "serial" {
                "parallel"
            } else {
                name.as_str()
            };
            if let Some(earlier) = self.seen.get(slot) {
                let message = if *earlier == name {
                    format!("duplicate key `{name}`")
                } else {
                    "`parallel` and `serial` say the same thing: give one of them".to_string()
                };
                return Err(Error::new(key.span(), message));
            }
            self.seen.insert(slot.to_string(), name.clone());
        }
        let wrong_form = || Error::new(key.span(), format!("`{name}` is written `{usage}`"));
        match (name.as_str(), arg) {
            ("peers", Arg::Value(kv)) => {
                let peers: usize = kv
                    .value
                    .int(&key, "the number of peers, e.g. `peers = 3`")?;
                if !(1..=MAX_PEERS).contains(&peers) {
                    return Err(Error::new_spanned(
                        &kv.value,
                        format!("`peers` must be within 1..={MAX_PEERS}, not {peers}"),
                    ));
                }
                self.peers = Some(peers);
            }
            ("subnet", Arg::Value(kv)) => {
                let text = kv
                    .value
                    .str(&key, "a subnet string, e.g. \"10.0.0.0/24\"")?;
                // Parsed now, and again in build() once `peers` is known.
                units::subnet(&text.value(), None).map_err(|e| Error::new(text.span(), e))?;
                self.subnet = Some(text.clone());
            }
            ("timeout", Arg::Value(kv)) => {
                let text = kv.value.str(&key, "a duration string, e.g. \"30s\"")?;
                let timeout =
                    units::duration(&text.value()).map_err(|e| Error::new(text.span(), e))?;
                if timeout.is_zero() {
                    return Err(Error::new(text.span(), "`timeout` must be above 0"));
                }
                self.timeout = Some(timeout);
            }
            ("seed", Arg::Value(kv)) => {
                self.seed = Some(kv.value.int(&key, "an integer (u64), e.g. `seed = 42`")?);
            }
            ("parallel", Arg::Flag(_)) => self.parallel = Some(true),
            ("parallel", Arg::Value(kv)) => self.parallel = Some(kv.value.bool(&key)?),
            ("serial", Arg::Value(kv)) => self.parallel = Some(!kv.value.bool(&key)?),
            ("netem", Arg::Flag(_)) => self.netem = true,
            ("ignore", Arg::Flag(_)) => self.ignore = Some(None),
            ("ignore", Arg::Value(kv)) => {
                let reason = kv.value.str(&key, "the reason, as a string")?;
                self.ignore = Some(Some(reason.value()));
            }
            ("crate", Arg::Value(kv)) => {
                let text = kv
                    .value
                    .str(&key, "a path, as a string: `crate = \"my::linkem\"`")?;
                let path = text.parse_with(Path::parse_mod_style).map_err(|_| {
                    Error::new(
                        text.span(),
                        format!(
                            "`crate` expects a path such as \"my::linkem\", not {:?}",
                            text.value()
                        ),
                    )
                })?;
                self.krate = Some(path);
            }
            ("all", Arg::List { group, .. }) => {
                let keys = parse_group(group, Punctuated::<KeyValue, Token![,]>::parse_terminated)?;
                self.all = Some(Impairment::parse(keys)?);
            }
            ("link", Arg::List { group, .. }) => {
                let args = parse_group(group, LinkArgs::parse)?;
                self.links.push(RawLink {
                    impairment: Impairment::parse(args.keys)?,
                    from: args.from,
                    arrow: args.arrow,
                    to: args.to,
                });
            }
            ("peer", Arg::List { group, .. }) => {
                self.bodies.push(parse_group(group, PeerArgs::parse)?);
            }
            _ => return Err(wrong_form()),
        }
        Ok(())
    }

    /// Refuses the keys of a harness-built network, and sets `peers` to 0.
    fn standalone(&mut self, errors: &mut Errors) {
        for key in ["peers", "subnet", "all", "link", "peer", "seed"] {
            if let Some(span) = self.spans.get(key) {
                errors.push(Error::new(
                    *span,
                    format!(
                        "`{key}` describes the network the harness builds, but this test takes \
                         no `Peer` or `Controller`: it builds its own networks. Give the \
                         function a `peer: linkem::Peer` or `controller: linkem::Controller` \
                         argument, or remove `{key}`"
                    ),
                ));
            }
        }
        self.peers = Some(0);
        self.links.clear();
        self.bodies.clear();
        self.all = None;
    }

    /// The checks across keys. Returns `None` when `peers` is missing.
    fn build(self, errors: &mut Errors) -> Option<Config> {
        let Some(peers) = self.peers else {
            if self.seen.contains_key("peers") || self.unknown_keys {
                // Given but refused, or perhaps misspelled: that error says enough.
                return None;
            }
            errors.push(Error::new(
                Span::call_site(),
                format!(
                    "missing key `peers`: say how many peers the test has, e.g. \
                         `#[linkem::test(peers = 3)]` (1..={MAX_PEERS})"
                ),
            ));
            return None;
        };
        let peer = |lit: &LitInt, errors: &mut Errors| -> Option<usize> {
            let n = errors.ok(lit.base10_parse::<usize>())?;
            if (1..=peers).contains(&n) {
                Some(n)
            } else {
                errors.push(Error::new(
                    lit.span(),
                    format!("no peer {n}: the peers of this test are numbered 1..={peers}"),
                ));
                None
            }
        };

        let subnet = self.subnet.and_then(|text| {
            errors
                .ok(units::subnet(&text.value(), Some(peers))
                    .map_err(|e| Error::new(text.span(), e)))
        });

        // Each direction once: `link(1, 2)` sets both, so `link(1 -> 2)` beside it
        // conflicts.
        let mut directions: BTreeMap<(usize, usize), String> = BTreeMap::new();
        let mut links = Vec::new();
        for link in self.links {
            let endpoints = {
                let mut tokens = link.from.to_token_stream();
                link.arrow.to_tokens(&mut tokens);
                link.to.to_tokens(&mut tokens);
                tokens
            };
            let (Some(from), Some(to)) = (peer(&link.from, errors), peer(&link.to, errors)) else {
                continue;
            };
            if from == to {
                errors.push(Error::new_spanned(
                    endpoints,
                    format!("a link needs two different peers: this one goes from peer {from} to itself"),
                ));
                continue;
            }
            let both = link.arrow.is_none();
            let mut wanted = vec![(from, to)];
            if both {
                wanted.push((to, from));
            }
            if let Some((a, b)) = wanted.iter().find(|d| directions.contains_key(d)) {
                let earlier = &directions[&(*a, *b)];
                errors.push(Error::new_spanned(
                    endpoints,
                    format!("the link {a} -> {b} is configured twice: an earlier {earlier}"),
                ));
                continue;
            }
            let written = if both {
                format!("`link({from}, {to}, ..)` sets both directions")
            } else {
                format!("`link({from} -> {to}, ..)` sets it")
            };
            for direction in wanted {
                directions.insert(direction, written.clone());
            }
            links.push(LinkConfig {
                from,
                to,
                both,
                impairment: link.impairment,
            });
        }

        let mut bodies = BTreeMap::new();
        for body in self.bodies {
            let Some(n) = peer(&body.peer, errors) else {
                continue;
            };
            if bodies.insert(n, body.body).is_some() {
                errors.push(Error::new(
                    body.peer.span(),
                    format!("peer {n} is given two bodies: keep one `peer({n}, ..)`"),
                ));
            }
        }

        Some(Config {
            peers,
            subnet,
            timeout: self.timeout,
            seed: self.seed,
            parallel: self.parallel.unwrap_or(false),
            ignore: self.ignore,
            netem: self.netem,
            krate: self.krate,
            all: self.all,
            links,
            bodies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn config(args: TokenStream) -> Config {
        match parse(args, false) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn error(args: TokenStream) -> String {
        match parse(args, false) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn every_top_level_key() {
        let c = config(quote! {
            peers = 3,
            subnet = "fd00::/64",
            timeout = "1.5s",
            seed = 7,
            parallel,
            ignore = "slow",
            crate = "my::linkem",
            all(loss = "1%"),
            link(1, 2, latency = "100ms"),
            link(2 -> 3, rate = "10mbit"),
            peer(1, leader),
            peer(3, self::follower),
        });
        assert_eq!(c.peers, 3);
        assert_eq!(c.subnet, Some(("fd00::".parse().unwrap(), 64)));
        assert_eq!(c.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.seed, Some(7));
        assert!(c.parallel);
        assert_eq!(c.ignore, Some(Some("slow".into())));
        assert_eq!(c.krate.to_token_stream().to_string(), "my :: linkem");
        assert!(c.all.is_some());
        let links: Vec<_> = c.links.iter().map(|l| (l.from, l.to, l.both)).collect();
        assert_eq!(links, [(1, 2, true), (2, 3, false)]);
        let bodies: Vec<_> = c.bodies.keys().copied().collect();
        assert_eq!(bodies, [1, 3]);
    }

    #[test]
    fn defaults_and_flag_forms() {
        let c = config(quote!(peers = 1));
        assert!(!c.parallel && c.ignore.is_none() && c.subnet.is_none());
        assert!(config(quote!(peers = 1, serial = false)).parallel);
        assert!(!config(quote!(peers = 1, parallel = false)).parallel);
        assert_eq!(config(quote!(peers = 1, ignore)).ignore, Some(None));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (quote!(), "missing key `peers`"),
            (quote!(peers = 0), "within 1..=250, not 0"),
            (quote!(peers = 251), "within 1..=250, not 251"),
            (quote!(peers = -1), "`peers` cannot be negative"),
            (
                quote!(peers = "3"),
                "`peers` expects the number of peers, e.g. `peers = 3`, found a string",
            ),
            (quote!(peers = 2, peers = 3), "duplicate key `peers`"),
            (
                quote!(peers = 2, parallel, serial = true),
                "`parallel` and `serial`",
            ),
            (
                quote!(peers = 2, peer_count = 3),
                "unknown key `peer_count`",
            ),
            (quote!(peres = 2), "did you mean `peers`?"),
            (quote!(peers), "`peers` is written `peers = 3`"),
            (quote!(peers = 2, link = 3), "`link` is written"),
            (
                quote!(peers = 2, link(1, 3)),
                "no peer 3: the peers of this test are numbered 1..=2",
            ),
            (quote!(peers = 2, link(0 -> 1)), "no peer 0"),
            (quote!(peers = 2, link(2, 2)), "goes from peer 2 to itself"),
            (
                quote!(peers = 2, link(1, 2), link(1 -> 2)),
                "the link 1 -> 2 is configured twice",
            ),
            (
                quote!(peers = 2, link(1 -> 2), link(2, 1)),
                "an earlier `link(1 -> 2, ..)` sets it",
            ),
            (quote!(peers = 2, link(1)), "expected the link's two peers"),
            (quote!(peers = 2, peer(3, f)), "no peer 3"),
            (
                quote!(peers = 2, peer(1, f), peer(1, g)),
                "peer 1 is given two bodies",
            ),
            (
                quote!(peers = 2, peer(1)),
                "expected `peer(N, path::to::body)`",
            ),
            (
                quote!(peers = 3, subnet = "10.0.0.0/30"),
                "holds 2 peers, and the test has 3",
            ),
            (quote!(peers = 3, subnet = "10.0.0.1/24"), "host bits"),
            (quote!(peers = 3, timeout = "0s"), "above 0"),
            (quote!(peers = 3, timeout = 30), "expects a duration string"),
            (
                quote!(peers = 3, crate = "not a path"),
                "`crate` expects a path",
            ),
            (quote!(peers = 3, seed = 1.5), "found a float"),
        ];
        for (args, want) in cases {
            let text = args.to_string();
            let err = error(args);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn errors_are_reported_together() {
        let err = error(quote!(peers = 2, bogus = 1, link(1, 3), timeout = "1xs"));
        assert!(err.contains("unknown key `bogus`"), "{err}");
        assert!(err.contains("no peer 3"), "{err}");
        assert!(err.contains("unknown duration unit"), "{err}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("latncy", "latency"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("peres", "peers"), 1);
    }
}
