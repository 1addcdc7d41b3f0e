//! The attribute's typed configuration: a [`Builder`] with one setter per key, each
//! checking its value where it is written, then the checks across keys (peer numbers,
//! links, subnet size) in one [`Builder::build`] step.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Error, Ident, LitInt, LitStr, Path, Result, Token};

use crate::diagnostics::{unknown_key, Errors};
use crate::impairment::Impairment;
use crate::syntax::{self, Arg, KeyValue, LinkArgs, PeerArgs, Value};
use crate::units;

/// The most peers a test may have.
pub(crate) const MAX_PEERS: usize = 250;

/// The keys of the attribute, each with how it is written.
const KEYS: &[(&str, &str)] = &[
    ("peers", "peers = 3"),
    ("subnet", "subnet = \"10.0.0.0/24\""),
    ("timeout", "timeout = \"30s\""),
    ("seed", "seed = 42"),
    (
        "capture",
        "capture`, `capture = \"always\"` or `capture = \"failed\"",
    ),
    (
        "backend",
        "backend = \"kernel\"` or `backend = \"userspace\"",
    ),
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

/// The keys that describe the network the harness builds: a standalone test, which
/// builds its own networks, takes none of them. (`seed` and `backend` it takes: they
/// apply to the networks it builds on the test's thread.)
const NETWORK_KEYS: &[&str] = &["peers", "subnet", "all", "link", "peer"];

/// The backends a test can be pinned to, with the `BackendKind` variant of each.
const BACKENDS: &[(&str, &str)] = &[("kernel", "Kernel"), ("userspace", "Userspace")];

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
    /// The `BackendKind` variant the test is pinned to (`backend = ".."`), if any.
    pub(crate) backend: Option<&'static str>,
    /// The `CaptureKeep` variant of `capture`, if the test captures.
    pub(crate) capture: Option<&'static str>,
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

/// A `link(..)` checked on its own, before the peer count is known.
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
    backend: Option<&'static str>,
    capture: Option<&'static str>,
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
    let args = syntax::args(args)?;
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
    /// Dispatches one argument to its key's setter, after refusing unknown and
    /// repeated keys and the wrong form (`peers` without a value, `link = 3`).
    fn add(&mut self, arg: Arg) -> Result<()> {
        let key = arg.key().unraw();
        let name = key.to_string();
        let Some(&(_, usage)) = KEYS.iter().find(|(k, _)| *k == name) else {
            self.unknown_keys = true;
            return Err(unknown_key(&key, "key", KEYS.iter().map(|(k, _)| *k)));
        };
        self.spans.entry(name.clone()).or_insert(key.span());
        self.once(&key, &name)?;
        match (name.as_str(), arg) {
            ("peers", Arg::Value(kv)) => self.set_peers(&key, &kv.value),
            ("subnet", Arg::Value(kv)) => self.set_subnet(&key, &kv.value),
            ("timeout", Arg::Value(kv)) => self.set_timeout(&key, &kv.value),
            ("seed", Arg::Value(kv)) => self.set_seed(&key, &kv.value),
            ("backend", Arg::Value(kv)) => self.set_backend(&key, &kv.value),
            ("capture", Arg::Flag(_)) => self.set_capture(None),
            ("capture", Arg::Value(kv)) => self.set_capture(Some((&key, &kv.value))),
            ("parallel", Arg::Flag(_)) => self.set_parallel(true),
            ("parallel", Arg::Value(kv)) => self.set_parallel(kv.value.bool(&key)?),
            ("serial", Arg::Value(kv)) => self.set_parallel(!kv.value.bool(&key)?),
            ("netem", Arg::Flag(_)) => self.set_netem(),
            ("ignore", Arg::Flag(_)) => self.set_ignore(&key, None),
            ("ignore", Arg::Value(kv)) => self.set_ignore(&key, Some(&kv.value)),
            ("crate", Arg::Value(kv)) => self.set_crate(&key, &kv.value),
            ("all", Arg::List { group, .. }) => self.set_all(syntax::key_values(group)?),
            ("link", Arg::List { group, .. }) => {
                self.add_link(syntax::parse_group(group, syn::parse::Parse::parse)?)
            }
            ("peer", Arg::List { group, .. }) => {
                self.add_peer_body(syntax::parse_group(group, syn::parse::Parse::parse)?)
            }
            _ => Err(Error::new(
                key.span(),
                format!("`{name}` is written `{usage}`"),
            )),
        }
    }

    /// Refuses a second non-repeatable key; `parallel` and `serial` share one slot.
    fn once(&mut self, key: &Ident, name: &str) -> Result<()> {
        if matches!(name, "link" | "peer") {
            return Ok(());
        }
        let slot = if name == "serial" { "parallel" } else { name };
        if let Some(earlier) = self.seen.get(slot) {
            let message = if earlier == name {
                format!("duplicate key `{name}`")
            } else {
                "`parallel` and `serial` say the same thing: give one of them".to_string()
            };
            return Err(Error::new(key.span(), message));
        }
        self.seen.insert(slot.to_string(), name.to_string());
        Ok(())
    }

    fn set_peers(&mut self, key: &Ident, value: &Value) -> Result<()> {
        let peers: usize = value.int(key, "the number of peers, e.g. `peers = 3`")?;
        if !(1..=MAX_PEERS).contains(&peers) {
            return Err(Error::new_spanned(
                value,
                format!("`peers` must be within 1..={MAX_PEERS}, not {peers}"),
            ));
        }
        self.peers = Some(peers);
        Ok(())
    }

    fn set_subnet(&mut self, key: &Ident, value: &Value) -> Result<()> {
        let text = value.str(key, "a subnet string, e.g. \"10.0.0.0/24\"")?;
        // Parsed now, and again in build() once `peers` is known.
        units::subnet(&text.value(), None).map_err(|e| Error::new(text.span(), e))?;
        self.subnet = Some(text.clone());
        Ok(())
    }

    fn set_timeout(&mut self, key: &Ident, value: &Value) -> Result<()> {
        let text = value.str(key, "a duration string, e.g. \"30s\"")?;
        let timeout = units::duration(&text.value()).map_err(|e| Error::new(text.span(), e))?;
        if timeout.is_zero() {
            return Err(Error::new(text.span(), "`timeout` must be above 0"));
        }
        self.timeout = Some(timeout);
        Ok(())
    }

    fn set_seed(&mut self, key: &Ident, value: &Value) -> Result<()> {
        self.seed = Some(value.int(key, "an integer (u64), e.g. `seed = 42`")?);
        Ok(())
    }

    fn set_capture(&mut self, value: Option<(&Ident, &Value)>) -> Result<()> {
        let Some((key, value)) = value else {
            self.capture = Some("Always");
            return Ok(());
        };
        let text = value.str(key, "which captures to keep, e.g. `capture = \"failed\"`")?;
        self.capture = Some(match text.value().as_str() {
            "always" => "Always",
            "failed" => "Failed",
            other => {
                return Err(Error::new(
                    text.span(),
                    format!(
                        "unknown capture mode {other:?}: \"always\" keeps every capture of \
                         the test, \"failed\" keeps them only when it fails"
                    ),
                ))
            }
        });
        Ok(())
    }

    fn set_backend(&mut self, key: &Ident, value: &Value) -> Result<()> {
        let text = value.str(key, "a backend's name, e.g. `backend = \"kernel\"`")?;
        let name = text.value();
        match BACKENDS.iter().find(|(written, _)| *written == name) {
            Some((_, variant)) => {
                self.backend = Some(variant);
                Ok(())
            }
            None => Err(Error::new(
                text.span(),
                format!(
                    "unknown backend {name:?}: a test is pinned to \"kernel\" (Linux traffic \
                     control) or \"userspace\" (linkem's engine); without `backend` it runs \
                     once on each backend available"
                ),
            )),
        }
    }

    fn set_parallel(&mut self, parallel: bool) -> Result<()> {
        self.parallel = Some(parallel);
        Ok(())
    }

    fn set_netem(&mut self) -> Result<()> {
        self.netem = true;
        Ok(())
    }

    fn set_ignore(&mut self, key: &Ident, reason: Option<&Value>) -> Result<()> {
        let reason = match reason {
            Some(value) => Some(value.str(key, "the reason, as a string")?.value()),
            None => None,
        };
        self.ignore = Some(reason);
        Ok(())
    }

    fn set_crate(&mut self, key: &Ident, value: &Value) -> Result<()> {
        let text = value.str(key, "a path, as a string: `crate = \"my::linkem\"`")?;
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
        Ok(())
    }

    fn set_all(&mut self, keys: impl IntoIterator<Item = KeyValue>) -> Result<()> {
        self.all = Some(Impairment::parse(keys)?);
        Ok(())
    }

    fn add_link(&mut self, args: LinkArgs) -> Result<()> {
        self.links.push(RawLink {
            impairment: Impairment::parse(args.keys)?,
            from: args.from,
            arrow: args.arrow,
            to: args.to,
        });
        Ok(())
    }

    fn add_peer_body(&mut self, args: PeerArgs) -> Result<()> {
        self.bodies.push(args);
        Ok(())
    }

    /// Refuses the keys of a harness-built network, and sets `peers` to 0.
    fn standalone(&mut self, errors: &mut Errors) {
        for key in NETWORK_KEYS {
            if let Some(span) = self.spans.get(*key) {
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
            capture: self.capture,
            backend: self.backend,
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
            capture = "failed",
            backend = "kernel",
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
        assert_eq!(c.capture, Some("Failed"));
        assert_eq!(c.backend, Some("Kernel"));
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
        assert_eq!(c.capture, None);
        assert_eq!(config(quote!(peers = 1, capture)).capture, Some("Always"));
        assert_eq!(
            config(quote!(peers = 1, capture = "always")).capture,
            Some("Always")
        );
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
            (
                quote!(peers = 3, backend = "tc"),
                "unknown backend \"tc\": a test is pinned to \"kernel\"",
            ),
            (
                quote!(peers = 3, capture = "never"),
                "unknown capture mode \"never\": \"always\" keeps every capture",
            ),
            (
                quote!(peers = 3, capture = true),
                "expects which captures to keep",
            ),
            (
                quote!(peers = 3, backend = kernel),
                "expects a backend's name",
            ),
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
}
