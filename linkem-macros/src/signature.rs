//! Which form a test function has, from its signature: a peer body (`peer: Peer`,
//! run on every peer) or a controller (`controller: Controller`, run beside them).

use syn::spanned::Spanned;
use syn::{Error, FnArg, PathArguments, Result, Signature, Type};

use crate::diagnostics::Errors;

/// The two forms of a test function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `async fn t(peer: linkem::Peer)`: runs on every peer without a `peer(N, ..)` body.
    Peer,
    /// `async fn t(controller: linkem::Controller)`: runs outside the peers, while
    /// each peer runs its `peer(N, ..)` body.
    Controller,
    /// `async fn t()`: builds its own networks; the harness gives it privileges, the
    /// serial lock and the timeout.
    Standalone,
}

const USAGE: &str = "a linkem test takes one argument: `peer: linkem::Peer` (it runs on \
                     every peer) or `controller: linkem::Controller` (it runs beside the peers)";

/// The form of `sig`, or every reason it has none.
pub(crate) fn form(sig: &Signature) -> Result<Form> {
    let mut errors = Errors::default();
    if sig.asyncness.is_none() {
        errors.push(Error::new(
            sig.fn_token.span,
            "#[linkem::test] needs an `async fn`: add `async` before `fn`",
        ));
    }
    if let Some(constness) = &sig.constness {
        errors.push(Error::new(
            constness.span,
            "a linkem test cannot be a `const fn`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(Error::new(
            unsafety.span,
            "a linkem test cannot be `unsafe`",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            "a linkem test cannot have an `extern` ABI",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(Error::new_spanned(
            &sig.generics,
            "a linkem test cannot be generic: the harness calls it with a `Peer` or a `Controller`",
        ));
    }
    if let Some(clause) = &sig.generics.where_clause {
        errors.push(Error::new_spanned(
            clause,
            "a linkem test cannot have a `where` clause",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(variadic, USAGE));
    }

    let mut form = None;
    let mut args = sig.inputs.iter();
    match args.next() {
        None => form = Some(Form::Standalone),
        Some(FnArg::Receiver(receiver)) => errors.push(Error::new_spanned(
            receiver,
            "a linkem test is a free function: it cannot take `self`",
        )),
        Some(FnArg::Typed(arg)) => match argument_form(&arg.ty) {
            Ok(f) => form = Some(f),
            Err(e) => errors.push(e),
        },
    }
    for extra in args {
        errors.push(Error::new(
            extra.span(),
            format!("{USAGE}; remove this one"),
        ));
    }
    errors.finish()?;
    form.ok_or_else(|| Error::new(sig.ident.span(), USAGE))
}

/// `Peer` or `Controller`, by the last segment of the type's path (so `linkem::Peer`,
/// `Peer` and `crate::Peer` are all peers).
fn argument_form(ty: &Type) -> Result<Form> {
    let unsupported = |why: &str| Error::new_spanned(ty, format!("{why}; {USAGE}"));
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last().expect("a path has a segment");
            let form = match last.ident.to_string().as_str() {
                "Peer" => Form::Peer,
                "Controller" => Form::Controller,
                _ => return Err(unsupported("unsupported argument type")),
            };
            if !matches!(last.arguments, PathArguments::None) {
                return Err(unsupported("unsupported argument type"));
            }
            Ok(form)
        }
        Type::Reference(reference) => match argument_form(&reference.elem) {
            Ok(_) => Err(Error::new_spanned(
                ty,
                "take the handle by value: the test owns it (`peer: linkem::Peer`)",
            )),
            Err(_) => Err(unsupported("unsupported argument type")),
        },
        Type::Group(group) => argument_form(&group.elem),
        Type::Paren(paren) => argument_form(&paren.elem),
        _ => Err(unsupported("unsupported argument type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::ItemFn;

    fn form_of(item: &str) -> std::result::Result<Form, String> {
        let item: ItemFn = syn::parse_str(item).unwrap();
        form(&item.sig).map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn forms() {
        assert_eq!(form_of("async fn t(p: linkem::Peer) {}"), Ok(Form::Peer));
        assert_eq!(
            form_of("async fn t(_: Peer) -> Result<(), E> {}"),
            Ok(Form::Peer)
        );
        assert_eq!(
            form_of("async fn t(mut c: ::linkem::Controller) {}"),
            Ok(Form::Controller)
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            ("fn t(p: Peer) {}", "needs an `async fn`"),
            ("async fn t(p: Peer, q: Peer) {}", "remove this one"),
            ("async fn t(p: String) {}", "unsupported argument type"),
            ("async fn t(p: &Peer) {}", "by value"),
            ("async fn t(p: Peer<u8>) {}", "unsupported argument type"),
            ("async fn t<T>(p: Peer) {}", "cannot be generic"),
            ("async fn t(p: Peer) where u8: Copy {}", "`where` clause"),
            ("async unsafe fn t(p: Peer) {}", "cannot be `unsafe`"),
            ("async fn t(self) {}", "cannot take `self`"),
        ];
        for (item, want) in cases {
            let err = form_of(item).unwrap_err();
            assert!(err.contains(want), "{item}: {err}");
        }
        let both = form_of("fn t<T>() {}").unwrap_err();
        assert_eq!(both.lines().count(), 2, "{both}");
        assert_eq!(form_of("async fn t() {}"), Ok(Form::Standalone));
    }
}
