//! The generated code: the function as written, and beside it, in an anonymous
//! `const` block, the `TestDef` that registers it in `linkem::testing::TESTS`.
//!
//! Everything is checked and converted before this step, so the spec is built from
//! plain constants (`Duration::from_nanos`, `Rate::bits_per_sec`, `f64` percentages).
//! The code names nothing but `<linkem>::__private`.

use std::net::IpAddr;
use std::time::Duration;

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, ItemFn, Path, ReturnType};

use crate::config::{self, Config};
use crate::diagnostics::Errors;
use crate::impairment::{Impairment, Setting, KEYS, MAX_DELAY, MODELS};
use crate::signature::{self, Form};
use crate::units::MAX_RATE_BITS;

/// `#[linkem::test(args)] item`.
pub(crate) fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let error = Error::new(e.span(), "#[linkem::test] goes on an `async fn`");
            return with_error(item, error);
        }
    };
    let mut errors = Errors::default();
    let form = errors.ok(signature::form(&func.sig));
    let standalone = matches!(form, Some(Form::Standalone));
    let config = errors.ok(config::parse(args, standalone));
    match (errors.finish(), config, form) {
        (Ok(()), Some(config), Some(form)) => {
            let registration = register(&config, form, &func);
            quote!(#item #registration)
        }
        (Err(e), ..) => with_error(item, e),
        _ => unreachable!("a missing value comes with an error"),
    }
}

/// The item as written, so that editors and later errors still see the function,
/// followed by the errors.
fn with_error(mut item: TokenStream, error: Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

fn register(config: &Config, form: Form, func: &ItemFn) -> TokenStream {
    let p = match &config.krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::linkem::__private),
    };
    let ident = &func.sig.ident;
    let name = ident.unraw().to_string();
    let peers = config.peers;
    let mut spec = quote!(#p::TestSpec::new(#peers));

    if let Some((addr, prefix_len)) = config.subnet {
        let addr = match addr {
            IpAddr::V4(a) => {
                let octets = a.octets();
                quote!(#p::IpAddr::from([#(#octets),*]))
            }
            IpAddr::V6(a) => {
                let segments = a.segments();
                quote!(#p::IpAddr::from([#(#segments),*]))
            }
        };
        spec.extend(quote!(.with_subnet(#addr, #prefix_len)));
    }
    if let Some(timeout) = config.timeout {
        let timeout = duration(&p, timeout);
        spec.extend(quote!(.with_timeout(#timeout)));
    }
    if let Some(seed) = config.seed {
        spec.extend(quote!(.with_seed(#seed)));
    }
    if let Some(variant) = config.capture {
        let variant = syn::Ident::new(variant, Span::call_site());
        spec.extend(quote!(.with_capture(
            #p::CaptureKeep::#variant,
            #p::option_env!("CARGO_TARGET_TMPDIR"),
        )));
    }
    if let Some(variant) = config.backend {
        let variant = syn::Ident::new(variant, Span::call_site());
        spec.extend(quote!(.with_backend(#p::BackendKind::#variant)));
    }
    if config.parallel {
        spec.extend(quote!(.with_parallel(true)));
    }
    if config.netem {
        spec.extend(quote!(.with_netem_required(true)));
    }
    if let Some(reason) = &config.ignore {
        let reason = match reason {
            Some(reason) => quote!(#p::Option::Some(#reason)),
            None => quote!(#p::Option::None),
        };
        spec.extend(quote!(.with_ignore(#reason)));
    }
    if let Some(all) = &config.all {
        let all = impairment(&p, all);
        spec.extend(quote!(.with_default_impairment(#all)));
    }
    for link in &config.links {
        let imp = impairment(&p, &link.impairment);
        let (from, to) = (link.from, link.to);
        spec.extend(quote!(.with_link(#from, #to, #imp)));
        if link.both {
            spec.extend(quote!(.with_link(#to, #from, #imp)));
        }
    }

    // The call of the test function carries the span of its return type, so that a
    // return type without `IntoTestOutcome` is reported there; the future, the span
    // of its name, so that a controller that is not `Send` is reported there.
    let outcome_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let mut callee = ident.clone();
    callee.set_span(outcome_span);
    let own = body(&p, form, &callee.into(), outcome_span, ident.span());
    match form {
        Form::Peer => spec.extend(quote!(.with_body(#own))),
        Form::Controller => spec.extend(quote!(.with_controller(#own))),
        Form::Standalone => spec.extend(quote!(.with_standalone(#own))),
    }
    for (peer, path) in &config.bodies {
        let body = body(&p, Form::Peer, path, path.span(), path.span());
        spec.extend(quote!(.with_peer_body(#peer, #body)));
    }

    let check = harness_check(ident);
    quote! {
        #check

        const _: () = {
            #[#p::distributed_slice(#p::TESTS)]
            #[linkme(crate = #p::linkme)]
            static __LINKEM_TEST: #p::TestDef = #p::TestDef {
                name: #name,
                module_path: #p::module_path!(),
                file: #p::file!(),
                line: #p::line!(),
                spec: __linkem_spec,
            };

            fn __linkem_spec() -> #p::TestSpec {
                #spec
            }
        };
    }
}

/// A `#[test]` that exists only where the mistake it reports is made: libtest's
/// default harness compiles the crate with `cfg(test)`, and would run none of the
/// linkem tests (they register in `TESTS`, which only `linkem_test::main!()` reads),
/// reporting "0 tests" as a success. With `harness = false`, `cfg(test)` is off and
/// this function does not exist. (Without `linkem_test::main!()` under `harness =
/// false`, the crate has no `main`, which rustc refuses: E0601.)
fn harness_check(ident: &syn::Ident) -> TokenStream {
    let name = ident.unraw().to_string();
    let check = quote::format_ident!("{}_needs_the_linkem_harness", name);
    let message = format!(
        "`{name}` is a #[linkem::test], which libtest's default harness cannot run: this \
         test target would pass without running it. Give the target the linkem harness, in \
         Cargo.toml:\n\n    [[test]]\n    name = \"{{target}}\"\n    harness = false\n\n\
         and in the target's main file:\n\n    linkem_test::main!();\n\n(linkem tests \
         cannot be unit tests of a library: put them in tests/.)"
    );
    quote! {
        #[cfg(test)]
        #[test]
        fn #check() {
            ::core::panic!(
                #message,
                target = ::core::option_env!("CARGO_CRATE_NAME").unwrap_or("the test file's name"),
            );
        }
    }
}

/// A non-capturing closure, coerced to `PeerBody` or `ControllerBody`, that calls the
/// function at `path` and turns what it returns into an `Outcome`.
fn body(p: &TokenStream, form: Form, path: &Path, outcome: Span, future: Span) -> TokenStream {
    let (handle, future_type) = match form {
        Form::Peer => (quote!(#p::Peer), quote!(#p::PeerFuture)),
        Form::Controller => (quote!(#p::Controller), quote!(#p::ControllerFuture)),
        Form::Standalone => (quote!(()), quote!(#p::ControllerFuture)),
    };
    // The handle's name keeps the call site's hygiene, whatever the spans come from.
    let arg = quote!(__linkem_handle);
    let into_outcome = respan(quote!(#p::IntoTestOutcome::into_outcome), outcome);
    let call = if matches!(form, Form::Standalone) {
        quote_spanned! {outcome=> #into_outcome(#path().await) }
    } else {
        quote_spanned! {outcome=> #into_outcome(#path(#arg).await) }
    };
    // `Box::pin(..)` is where the future is coerced to `PeerFuture` or
    // `ControllerFuture`: where a future that is not `Send` is reported. Its span is
    // its first token's, so the path to `Box` gets the span too.
    let boxed = respan(quote!(#p::Box::pin), future);
    quote_spanned! {future=>
        |#arg: #handle| -> #future_type { #boxed(async move { #call }) }
    }
}

/// `tokens` with every span set to `span` (paths of `__private` resolve the same from
/// the user's tokens as from the call site).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

fn duration(p: &TokenStream, d: Duration) -> TokenStream {
    // Parsing capped every duration at u64 nanoseconds.
    let nanos = u64::try_from(d.as_nanos()).expect("checked when parsed");
    quote!(#p::Duration::from_nanos(#nanos))
}

fn percent(p: &TokenStream, value: f64) -> TokenStream {
    let value = Literal::f64_suffixed(value);
    quote!(#p::Percent::new(#value))
}

fn rate(p: &TokenStream, bits: u64) -> TokenStream {
    quote!(#p::Rate::bits_per_sec(#bits))
}

/// `LinkImpairment::new().with_…(…)…`, one builder call per key given.
fn impairment(p: &TokenStream, imp: &Impairment) -> TokenStream {
    let mut out = quote!(#p::LinkImpairment::new());
    for (key, setting) in imp.settings() {
        let method = syn::Ident::new(key.method, Span::call_site());
        let arg = match setting {
            Setting::Duration(d) => duration(p, *d),
            Setting::Percent(v) => percent(p, *v),
            Setting::Distribution(variant) => {
                let variant = syn::Ident::new(variant, Span::call_site());
                quote!(#p::Distribution::#variant)
            }
            Setting::LossModel(model) => {
                let variant = syn::Ident::new(model.variant, Span::call_site());
                let fields = model.values.iter().map(|&(field, value)| {
                    let field = syn::Ident::new(field, Span::call_site());
                    let value = percent(p, value);
                    quote!(#field: #value)
                });
                quote!(#p::LossModel::#variant { #(#fields),* })
            }
            Setting::Count(n) => n.into_token_stream(),
            Setting::Rate(bits) => rate(p, *bits),
            Setting::Seed(seed) => seed.into_token_stream(),
        };
        out.extend(quote!(.#method(#arg)));
    }
    out
}

/// `__impairment_keys!()`: every key of `all(..)` and `link(..)` with the field of
/// `LinkImpairment` it sets, as `&[(&str, &str)]`. Beside the list, a pattern that
/// names every field of `LinkImpairment` and of each `LossModel` variant without `..`:
/// it stops compiling when the library gains a field the macro cannot set, or loses
/// one it sets.
pub(crate) fn impairment_keys(krate: TokenStream) -> TokenStream {
    let p = if krate.is_empty() {
        quote!(::linkem::__private)
    } else {
        quote!(#krate::__private)
    };
    let pairs = KEYS.iter().map(|k| {
        let (name, field) = (k.name, k.field);
        quote!((#name, #field))
    });
    let fields = KEYS
        .iter()
        .map(|k| syn::Ident::new(k.field, Span::call_site()));
    let models = MODELS.iter().map(|m| {
        let variant = syn::Ident::new(m.variant, Span::call_site());
        let params = m
            .params
            .iter()
            .map(|(param, _)| syn::Ident::new(param, Span::call_site()));
        quote!(#p::LossModel::#variant { #(#params: _),* } => {})
    });
    quote! {{
        #[allow(dead_code, unreachable_patterns)]
        fn __every_field_has_a_key(imp: #p::LinkImpairment, model: #p::LossModel) {
            let #p::LinkImpairment { #(#fields: _),* } = imp;
            match model {
                #(#models)*
                _ => {}
            }
        }
        &[#(#pairs),*] as &[(&str, &str)]
    }}
}

/// `__impairment_limits!()`: the bounds the macro checks, as `(max_delay_secs,
/// max_rate_bits_per_sec)`, for the test that compares them with the library's.
pub(crate) fn impairment_limits() -> TokenStream {
    let delay = MAX_DELAY.as_secs();
    quote!((#delay, #MAX_RATE_BITS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, item: TokenStream) -> String {
        test(args, item).to_string()
    }

    #[test]
    fn a_peer_test_registers_its_spec() {
        let out = expand(
            quote!(peers = 2, link(1 -> 2, latency = "1.5ms", loss = "1%", rate = "10mbit")),
            quote!(
                async fn t(peer: linkem::Peer) {}
            ),
        );
        assert!(
            out.starts_with("async fn t (peer : linkem :: Peer) { }"),
            "{out}"
        );
        for want in [
            ":: linkem :: __private :: TestSpec :: new (2usize)",
            ". with_link (1usize , 2usize , :: linkem :: __private :: LinkImpairment :: new () \
             . with_latency (:: linkem :: __private :: Duration :: from_nanos (1500000u64)) \
             . with_loss (:: linkem :: __private :: Percent :: new (1f64)) \
             . with_rate (:: linkem :: __private :: Rate :: bits_per_sec (10000000u64)))",
            ". with_body (| __linkem_handle : :: linkem :: __private :: Peer |",
            "t (__linkem_handle) . await",
            "name : \"t\"",
        ] {
            assert!(out.contains(want), "missing {want}\nin {out}");
        }
        assert!(!out.contains("with_link (2usize , 1usize"), "{out}");
        assert!(
            out.contains("# [cfg (test)] # [test] fn t_needs_the_linkem_harness ()"),
            "{out}"
        );
        assert!(out.contains("harness = false"), "{out}");
    }

    #[test]
    fn both_directions_and_the_crate_override() {
        let out = expand(
            quote!(
                peers = 2,
                crate = "my::lk",
                link(1, 2),
                subnet = "fd00::/64"
            ),
            quote!(
                async fn r#async(c: Controller) {}
            ),
        );
        assert!(out.contains("with_link (1usize , 2usize"), "{out}");
        assert!(out.contains("with_link (2usize , 1usize"), "{out}");
        assert!(out.contains("my :: lk :: __private :: TestSpec"), "{out}");
        assert!(!out.contains(":: linkem ::"), "{out}");
        assert!(out.contains("with_controller"), "{out}");
        assert!(out.contains("name : \"async\""), "{out}");
        assert!(out.contains("IpAddr :: from ([64768u16 , 0u16"), "{out}");
    }

    #[test]
    fn an_error_keeps_the_function() {
        let out = expand(
            quote!(peers = 0),
            quote!(
                fn t(x: u8) {}
            ),
        );
        assert!(out.starts_with("fn t (x : u8) { }"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
        assert!(!out.contains("missing key"), "{out}");
        assert!(!out.contains("TestDef"), "{out}");
    }
}
