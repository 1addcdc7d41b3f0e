//! The attribute's syntax: keys and values as written, each keeping its span. Nothing
//! here knows what a key means; [`crate::config`] and [`crate::impairment`] check them.

use proc_macro2::{Group, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{token, Error, Ident, Lit, LitInt, LitStr, Path, Result, Token};

/// The attribute's arguments, `key`, `key = value` or `key(..)`, comma-separated.
pub(crate) fn args(tokens: TokenStream) -> Result<Punctuated<Arg, Token![,]>> {
    Punctuated::<Arg, Token![,]>::parse_terminated.parse2(tokens)
}

/// The `key = value` pairs inside a group such as `all(..)`.
pub(crate) fn key_values(group: Group) -> Result<Punctuated<KeyValue, Token![,]>> {
    parse_group(group, Punctuated::<KeyValue, Token![,]>::parse_terminated)
}

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
    pub(crate) fn bool(&self, key: &Ident) -> Result<bool> {
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
pub(crate) enum Arg {
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
    pub(crate) fn key(&self) -> &Ident {
        match self {
            Arg::Flag(key) | Arg::List { key, .. } => key,
            Arg::Value(kv) => &kv.key,
        }
    }
}

/// Parses the inside of `group` with `parser`. The group keeps its span, so an error at
/// the end of the arguments points at their closing parenthesis.
pub(crate) fn parse_group<T>(
    group: Group,
    parser: impl FnOnce(ParseStream<'_>) -> Result<T>,
) -> Result<T> {
    let parse = |input: ParseStream<'_>| {
        let content;
        syn::parenthesized!(content in input);
        parser(&content)
    };
    parse.parse2(TokenStream::from(TokenTree::Group(group)))
}

/// `link(a, b, key = value, ..)` or `link(a -> b, ..)`.
pub(crate) struct LinkArgs {
    pub(crate) from: LitInt,
    pub(crate) arrow: Option<Token![->]>,
    pub(crate) to: LitInt,
    pub(crate) keys: Vec<KeyValue>,
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
pub(crate) struct PeerArgs {
    pub(crate) peer: LitInt,
    pub(crate) body: Path,
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
