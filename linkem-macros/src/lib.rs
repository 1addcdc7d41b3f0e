//! The `#[linkem::test]` attribute. An implementation detail of linkem, which
//! re-exports it: depend on `linkem`, not on this crate.
//!
//! Layers, each importing only those below it:
//! * `syntax`: the arguments as written (keys, values, spans), and `diagnostics`, the
//!   errors gathered across them;
//! * `units`: the literals with units (durations, rates, sizes, subnets);
//! * `impairment`: the keys of `all(..)` and `link(..)`, one table of them, checked;
//! * `config`: the attribute's typed configuration, one setter per key, and the checks
//!   across keys;
//! * `signature`: the function's form, from its argument;
//! * `expand`: the generated code.
//!
//! Every error points at the token that causes it, and the function is still emitted
//! beside the errors.

#![forbid(unsafe_code)]

mod config;
mod diagnostics;
mod expand;
mod impairment;
mod signature;
mod syntax;
mod units;

use proc_macro::TokenStream;

/// Declares a test that runs on an emulated network.
///
/// ```
/// #[linkem::test(peers = 3, link(1, 2, latency = "100ms", loss = "1%"), link(2 -> 3, rate = "10mbit"))]
/// async fn replicates_under_latency(peer: linkem::Peer) {
///     // runs once on every peer, inside that peer's network namespace
///     let _me = peer.id();
/// }
/// # fn main() {}
/// ```
///
/// The test is registered in `linkem::testing::TESTS` for the harness to run; the
/// function itself is left as written. Everything in the attribute is checked at
/// compile time.
///
/// # Forms
///
/// * **One body for every peer**: the function takes a `Peer` (any path whose last
///   segment is `Peer`). It runs once per peer, each on the peer's own thread inside the
///   peer's namespace. `peer(N, path)` gives peer `N` another body instead.
/// * **A controller**: the function takes a `Controller`. It runs outside every
///   namespace while each peer runs its `peer(N, path)` body; peers without one run no
///   code.
///
/// A body returns `()` or `Result<(), E>` with `E: Debug`; an `Err` fails the test.
/// A peer body's future need not be `Send`; a controller's must be.
///
/// ```
/// use linkem::{Controller, Peer};
///
/// async fn leader(peer: Peer) -> Result<(), String> {
///     Ok(())
/// }
///
/// async fn follower(peer: Peer) {}
///
/// #[linkem::test(peers = 3, peer(1, leader), peer(2, follower), peer(3, follower))]
/// async fn elects_a_leader(controller: Controller) -> Result<(), std::io::Error> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// # Keys of the test
///
/// | key | example | meaning |
/// | --- | --- | --- |
/// | `peers` | `peers = 3` | how many peers, 1..=250 (required); they are numbered from 1 |
/// | `subnet` | `subnet = "10.0.0.0/24"`, `subnet = "fd00::/64"` | where the addresses come from (peer `n` gets the `n`-th host); a network address with room for every peer |
/// | `timeout` | `timeout = "30s"` | how long the whole test may take |
/// | `seed` | `seed = 42` | seed of everything random: netem (for links without their own `seed`) and the harness |
/// | `capture` | `capture`, `capture = "failed"` | writes a pcapng capture of each network of the test, into `LINKEM_CAPTURE` or else `target/tmp/linkem-captures`; `"failed"` keeps a file only when the test fails (the report names it) |
/// | `parallel` | `parallel`, `parallel = true`, or `serial = false` | may run beside other tests, without the global namespace lock (default: serial) |
/// | `ignore` | `ignore`, `ignore = "needs Linux 6.1"` | run only when ignored tests are asked for |
/// | `crate` | `crate = "my::linkem"` | where linkem is, when it is not `::linkem` |
/// | `all` | `all(latency = "10ms", loss = "0.1%")` | the impairment of every direction that no `link` sets |
/// | `link` | `link(1, 2, ...)` | the impairment of both directions between peers 1 and 2 |
/// | `link` | `link(1 -> 2, ...)` | the impairment of the direction 1 -> 2 only |
/// | `peer` | `peer(2, path::to::body)` | the body of peer 2 (repeatable, once per peer) |
///
/// A `link` replaces `all` for its directions: it does not inherit `all`'s keys. Each
/// direction may be set once: `link(1, 2, ..)` beside `link(2 -> 1, ..)` is an error.
///
/// # Keys of `all(..)` and `link(..)`
///
/// | key | example | |
/// | --- | --- | --- |
/// | `latency` | `"100ms"` | one-way delay, whole microseconds, at most 1h |
/// | `jitter` | `"10ms"` | delay variation |
/// | `distribution` | `"normal"` | of the jitter: `"uniform"`, `"normal"`, `"pareto"`, `"paretonormal"` |
/// | `latency_correlation` | `"25%"` | |
/// | `loss` | `"1%"` or `1.0` | random loss |
/// | `loss_correlation` | `"25%"` | |
/// | `loss_model` | `gemodel(p = "1%", r = "10%")` | bursty loss, instead of `loss`; see below |
/// | `duplicate`, `duplicate_correlation` | `"0.1%"` | |
/// | `corrupt`, `corrupt_correlation` | `"0.1%"` | single-bit corruption |
/// | `reorder`, `reorder_correlation` | `"25%"` | needs a `latency` |
/// | `gap` | `5` | reorder only every 5th packet; needs a `latency` |
/// | `rate` (or `bandwidth`) | `"10mbit"` | token-bucket shaper |
/// | `burst` | `"32kb"` or `32768` | the shaper's bucket, bytes; needs a `rate` |
/// | `queue_latency` | `"50ms"` | the longest wait in the shaper's queue; needs a `rate` |
/// | `limit` | `1000` | netem's queue, in packets |
/// | `netem_rate` | `"100mbit"` | netem's own serialization rate |
/// | `seed` | `7` | netem's random seed for this link |
///
/// `loss_model` is one of
/// * `gemodel(p = "1%", r = "10%", bad_loss = "100%", good_loss = "0%")`: Gilbert-Elliott,
///   as `tc ... loss gemodel p r 1-h 1-k`; `p` (good to bad) and `r` (bad to good) are
///   required, `bad_loss` defaults to 100% and `good_loss` to 0%.
/// * `state(p13 = "1%", p31 = "90%", p32 = "0%", p23 = "0%", p14 = "0%")`: netem's
///   4-state Markov model, as `tc ... loss state`; `p13` and `p31` are required, the
///   others default to 0%.
///
/// # Literals
///
/// * Durations: a decimal number and a unit, `ns`, `us` (or `µs`), `ms`, `s`, `min`,
///   `h`: `"250us"`, `"1.5s"`, `"2min"`. `m` is refused as ambiguous.
/// * Percentages: `"1%"`, `"0.5%"`, or a number in percent, `1.0` or `1`; within 0..=100.
/// * Rates, in bits per second: `bit`, `kbit`, `mbit`, `gbit`, `tbit` (SI, as tc:
///   `kbit` is 1000 bit/s), `kibit`, `mibit`, `gibit`, `tibit` (IEC): `"1.5mbit"`. tc's
///   byte units (`kbps`, `mbps` ...) are refused, as most readers take them for bits.
/// * Sizes, in bytes: `b`, `kb`/`kib`/`k`, `mb`/`mib`/`m`, `gb`/`gib`/`g`, binary as in tc
///   (`"32kb"` is 32768 bytes), or an integer number of bytes.
///
/// Unit names are case-insensitive; a value that is not a whole number of the base unit
/// (`"1.5ns"`) is refused, not rounded.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::test(args.into(), item.into()).into()
}

/// Every key of `all(..)` and `link(..)` with the `LinkImpairment` field it sets, as
/// `&[(&str, &str)]`; it fails to compile when a field of `LinkImpairment` (or of a
/// `LossModel` variant) has no key. For linkem's own tests: not an API. An argument
/// gives the path of linkem (default `::linkem`).
#[doc(hidden)]
#[proc_macro]
pub fn __impairment_keys(krate: TokenStream) -> TokenStream {
    expand::impairment_keys(krate.into()).into()
}

/// The bounds the attribute checks, `(max_delay_secs, max_rate_bits_per_sec)`, for
/// linkem's own tests: not an API.
#[doc(hidden)]
#[proc_macro]
pub fn __impairment_limits(_: TokenStream) -> TokenStream {
    expand::impairment_limits().into()
}
