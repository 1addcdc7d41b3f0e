//! What `#[linkem::test]` records about a test, for the runner to carry out.
//!
//! The attribute checks and converts everything at compile time, then adds one
//! [`TestDef`] to the distributed slice [`TESTS`]; its [`TestDef::spec`] builds the
//! [`TestSpec`]: how many peers, their subnet, the impairment of every direction, and
//! the bodies to run. This module is pure data: nothing here touches the kernel.
//!
//! A spec can also be built by hand with the `with_*` builders:
//!
//! ```
//! use linkem::tc::impairment::LinkImpairment;
//! use linkem::testing::TestSpec;
//! use std::time::Duration;
//!
//! let wan = LinkImpairment::new().with_latency(Duration::from_millis(40));
//! let spec = TestSpec::new(3)
//!     .with_default_impairment(LinkImpairment::new().with_loss(1.0))
//!     .with_link(1, 2, wan.clone())
//!     .with_timeout(Duration::from_secs(30));
//! assert_eq!(spec.impairment(1, 2), Some(&wan));
//! assert_eq!(spec.impairment(2, 1), spec.default_impairment());
//! assert!(spec.validate().is_ok());
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use linkme::distributed_slice;

use crate::capture::CaptureKeep;
use crate::error::Error;
use crate::network::{BackendKind, Link, PeerId};
use crate::tc::impairment::LinkImpairment;
use crate::testing::{Controller, Failure, Peer};

/// The future of a peer body.
///
/// Not `Send`: each peer body is created and driven on that peer's own thread (inside
/// its namespace), so it may hold `Rc`, `RefCell` guards and other thread-bound values
/// across `.await`.
pub type PeerFuture = Pin<Box<dyn Future<Output = Result<(), Failure>>>>;

/// The future of a controller body.
///
/// `Send`: the controller runs on the harness's runtime, beside the futures that watch
/// the peers' threads, and the harness may move it between worker threads (or spawn it
/// to catch its panic on its own). A controller that needs thread-bound state keeps it
/// out of its `.await` points, or hands the work to a peer body.
pub type ControllerFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// A peer body: called once, on the peer's thread, with that peer's handle.
pub type PeerBody = fn(Peer) -> PeerFuture;

/// A controller body: called once, outside every peer's namespace.
pub type ControllerBody = fn(Controller) -> ControllerFuture;

/// A standalone body (`async fn t()`): builds its own networks; the harness provides
/// privileges, the serial lock and the timeout.
pub type StandaloneBody = fn(()) -> ControllerFuture;

/// One test, as `#[linkem::test]` registers it in [`TESTS`].
#[derive(Debug, Clone, Copy)]
pub struct TestDef {
    /// The function's name (without `r#`).
    pub name: &'static str,
    /// `module_path!()` where the test is defined, starting with the crate's name.
    pub module_path: &'static str,
    /// `file!()` of the definition.
    pub file: &'static str,
    /// `line!()` of the attribute.
    pub line: u32,
    /// Builds the test's spec (cheap; no kernel work).
    pub spec: fn() -> TestSpec,
}

impl TestDef {
    /// The name libtest would give: the module path without the crate's name, then
    /// the function's name (`net::replication::three_peers`).
    pub fn path(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_krate, module)) => format!("{module}::{}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// Every `#[linkem::test]` linked into the binary, in no particular order.
#[distributed_slice]
pub static TESTS: [TestDef];

/// A test's network and bodies.
///
/// Peers are numbered from 1 to [`peers`](TestSpec::peers). Impairments are per
/// direction: the one set for `a -> b` with [`with_link`](TestSpec::with_link) if any,
/// otherwise the [default](TestSpec::with_default_impairment) if any, otherwise none.
/// A specific link replaces the default whole; it does not inherit its fields.
///
/// Each peer runs its own body ([`with_peer_body`](TestSpec::with_peer_body)) or else
/// the [default body](TestSpec::with_body); a peer with neither runs no code. The
/// [controller](TestSpec::with_controller), if any, runs beside them.
#[derive(Debug, Clone)]
pub struct TestSpec {
    peers: usize,
    subnet: Option<(IpAddr, u8)>,
    timeout: Option<Duration>,
    seed: Option<u64>,
    backend: Option<BackendKind>,
    capture: Option<CaptureKeep>,
    capture_dir: Option<&'static str>,
    parallel: bool,
    ignore: Option<Option<&'static str>>,
    default_impairment: Option<LinkImpairment>,
    links: BTreeMap<Link, LinkImpairment>,
    default_body: Option<PeerBody>,
    peer_bodies: BTreeMap<PeerId, PeerBody>,
    controller: Option<ControllerBody>,
    standalone: Option<StandaloneBody>,
    netem_required: bool,
}

impl TestSpec {
    /// A test of `peers` peers, with no impairment, no body and every default: the
    /// runner's subnet and timeout, no seed, serial, not ignored.
    pub fn new(peers: usize) -> Self {
        TestSpec {
            peers,
            subnet: None,
            timeout: None,
            seed: None,
            backend: None,
            capture: None,
            capture_dir: None,
            parallel: false,
            ignore: None,
            default_impairment: None,
            links: BTreeMap::new(),
            default_body: None,
            peer_bodies: BTreeMap::new(),
            controller: None,
            standalone: None,
            netem_required: false,
        }
    }

    /// The subnet the peers' addresses come from (peer `n` gets its `n`-th host).
    pub fn with_subnet(mut self, addr: IpAddr, prefix_len: u8) -> Self {
        self.subnet = Some((addr, prefix_len));
        self
    }

    /// How long the whole test (bodies and controller) may run.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The seed of the test's networks ([`NetworkBuilder::seed`](crate::network::NetworkBuilder::seed)):
    /// every link's random stream is derived from it, unless the link sets a seed of its
    /// own. The harness-built network gets it through its builder; a standalone test's
    /// networks built on the test's thread without a seed of their own get it too.
    /// `LINKEM_SEED` overrides it. Without it the harness picks a random one per run and
    /// prints it (with the command that replays it) when the test fails.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Pins the test to one backend (the `backend` key): the harness runs it on that
    /// backend only, instead of once per backend available. [`BackendKind::Auto`]
    /// unpins it.
    pub fn with_backend(mut self, backend: BackendKind) -> Self {
        self.backend = (backend != BackendKind::Auto).then_some(backend);
        self
    }

    /// Captures the test's networks (the `capture` key), keeping the files as `keep`
    /// says (`LINKEM_CAPTURE_KEEP` wins). They go into `LINKEM_CAPTURE` if it is set,
    /// else into `linkem-captures` under `target_tmpdir` (the expansion passes cargo's
    /// `CARGO_TARGET_TMPDIR`, set for integration tests and benchmarks), else under the
    /// system's temporary directory.
    pub fn with_capture(mut self, keep: CaptureKeep, target_tmpdir: Option<&'static str>) -> Self {
        self.capture = Some(keep);
        self.capture_dir = target_tmpdir;
        self
    }

    /// Whether the test may run beside others. Tests are serial by default: they hold
    /// the global namespace lock while they run.
    pub fn with_parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// Marks the test ignored, with an optional reason.
    pub fn with_ignore(mut self, reason: Option<&'static str>) -> Self {
        self.ignore = Some(reason);
        self
    }

    /// The impairment of every direction that has no [`with_link`](Self::with_link).
    pub fn with_default_impairment(mut self, impairment: LinkImpairment) -> Self {
        self.default_impairment = Some(impairment);
        self
    }

    /// The impairment of the direction `from -> to` (one direction; call it twice for
    /// both). A second call for the same direction replaces the first.
    pub fn with_link(mut self, from: usize, to: usize, impairment: LinkImpairment) -> Self {
        self.links
            .insert(Link::new(PeerId(from), PeerId(to)), impairment);
        self
    }

    /// The body of every peer that has no [`with_peer_body`](Self::with_peer_body).
    pub fn with_body(mut self, body: PeerBody) -> Self {
        self.default_body = Some(body);
        self
    }

    /// The body of peer `peer`.
    pub fn with_peer_body(mut self, peer: usize, body: PeerBody) -> Self {
        self.peer_bodies.insert(PeerId(peer), body);
        self
    }

    /// The controller body.
    pub fn with_controller(mut self, controller: ControllerBody) -> Self {
        self.controller = Some(controller);
        self
    }

    /// Declares that the test needs sch_netem (the `netem` key): with its links' own
    /// needs, what the harness checks before listing it as runnable.
    pub fn with_netem_required(mut self, required: bool) -> Self {
        self.netem_required = required;
        self
    }

    /// Whether the test needs sch_netem: declared, or an impairment of its links
    /// needs it.
    pub fn needs_netem(&self) -> bool {
        self.netem_required
            || self
                .default_impairment
                .as_ref()
                .is_some_and(LinkImpairment::needs_netem)
            || self.links().any(|(_, imp)| imp.needs_netem())
    }

    /// Makes this a standalone test (no harness-built network).
    pub fn with_standalone(mut self, body: StandaloneBody) -> Self {
        self.standalone = Some(body);
        self
    }

    /// How many peers the network has.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// The subnet, or `None` for the runner's default.
    pub fn subnet(&self) -> Option<(IpAddr, u8)> {
        self.subnet
    }

    /// The timeout, or `None` for the runner's default.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The test's seed, if it sets one.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The backend the test is pinned to, or `None` when it runs on every backend
    /// available.
    pub fn backend(&self) -> Option<BackendKind> {
        self.backend
    }

    /// Which captures the test keeps, if it asks for capture itself.
    pub fn capture(&self) -> Option<CaptureKeep> {
        self.capture
    }

    /// Where the test's captures go when `LINKEM_CAPTURE` names no directory.
    pub fn capture_dir(&self) -> std::path::PathBuf {
        self.capture_dir
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("linkem-captures")
    }

    /// True when the test may run without the global namespace lock.
    pub fn is_parallel(&self) -> bool {
        self.parallel
    }

    /// True when the test is ignored unless asked for (`--ignored`).
    pub fn is_ignored(&self) -> bool {
        self.ignore.is_some()
    }

    /// Why the test is ignored, when it says.
    pub fn ignore_reason(&self) -> Option<&'static str> {
        self.ignore.flatten()
    }

    /// The default impairment, if any.
    pub fn default_impairment(&self) -> Option<&LinkImpairment> {
        self.default_impairment.as_ref()
    }

    /// The impairment set for `from -> to` itself, without the default.
    pub fn link(&self, from: usize, to: usize) -> Option<&LinkImpairment> {
        self.links.get(&Link::new(PeerId(from), PeerId(to)))
    }

    /// The impairment `from -> to` gets: its own, else the default.
    pub fn impairment(&self, from: usize, to: usize) -> Option<&LinkImpairment> {
        self.link(from, to).or(self.default_impairment())
    }

    /// The directions set with [`with_link`](Self::with_link), in order.
    pub fn links(&self) -> impl Iterator<Item = (Link, &LinkImpairment)> + '_ {
        self.links.iter().map(|(link, imp)| (*link, imp))
    }

    /// The body peer `peer` runs: its own, else the default, else none.
    pub fn body_for(&self, peer: usize) -> Option<PeerBody> {
        self.peer_bodies
            .get(&PeerId(peer))
            .copied()
            .or(self.default_body)
    }

    /// The default body, if any.
    pub fn default_body(&self) -> Option<PeerBody> {
        self.default_body
    }

    /// The peers with a body of their own, in order.
    pub fn peer_bodies(&self) -> impl Iterator<Item = (PeerId, PeerBody)> + '_ {
        self.peer_bodies.iter().map(|(peer, body)| (*peer, *body))
    }

    /// The controller body, if any.
    pub fn controller(&self) -> Option<ControllerBody> {
        self.controller
    }

    /// The standalone body, if this test builds its own networks.
    pub fn standalone(&self) -> Option<StandaloneBody> {
        self.standalone
    }

    /// Checks what the attribute checks at compile time, for specs built by hand:
    /// links and peer bodies name existing peers, no link goes from a peer to itself,
    /// and every impairment is valid. The subnet is the network's to check.
    pub fn validate(&self) -> Result<(), Error> {
        let known = |peer: PeerId| {
            if (1..=self.peers).contains(&peer.0) {
                Ok(())
            } else {
                Err(Error::UnknownPeer(peer))
            }
        };
        for (link, imp) in &self.links {
            known(link.source)?;
            known(link.destination)?;
            if link.source == link.destination {
                return Err(Error::SelfLink(*link));
            }
            imp.validate()?;
        }
        if let Some(imp) = &self.default_impairment {
            imp.validate()?;
        }
        for peer in self.peer_bodies.keys() {
            known(*peer)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tc::impairment::Rate;

    fn body(_: Peer) -> PeerFuture {
        Box::pin(async { Ok(()) })
    }

    fn other_body(_: Peer) -> PeerFuture {
        Box::pin(async { Err("other".to_string().into()) })
    }

    #[test]
    fn a_new_spec_has_every_default() {
        let spec = TestSpec::new(2);
        assert_eq!(spec.peers(), 2);
        assert_eq!(spec.subnet(), None);
        assert_eq!(spec.timeout(), None);
        assert_eq!(spec.seed(), None);
        assert_eq!(spec.backend(), None);
        assert!(!spec.is_parallel());
        assert!(!spec.is_ignored());
        assert!(spec.default_impairment().is_none());
        assert_eq!(spec.links().count(), 0);
        assert!(spec.body_for(1).is_none());
        assert!(spec.controller().is_none());
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn a_link_replaces_the_default_for_its_direction_only() {
        let default = LinkImpairment::new().with_loss(5.0);
        let slow = LinkImpairment::new().with_rate(Rate::mbit(1));
        let spec = TestSpec::new(3)
            .with_default_impairment(default.clone())
            .with_link(1, 2, slow.clone());
        assert_eq!(spec.link(1, 2), Some(&slow));
        assert_eq!(spec.link(2, 1), None);
        assert_eq!(spec.impairment(1, 2), Some(&slow));
        assert_eq!(spec.impairment(2, 1), Some(&default));
        assert_eq!(spec.impairment(3, 1), Some(&default));
        let links: Vec<_> = spec.links().map(|(l, _)| l.to_string()).collect();
        assert_eq!(links, ["1 -> 2"]);
    }

    #[test]
    fn a_peer_body_overrides_the_default_body() {
        let spec = TestSpec::new(3)
            .with_body(body)
            .with_peer_body(2, other_body);
        let is = |peer, want: PeerBody| {
            spec.body_for(peer)
                .is_some_and(|got| std::ptr::fn_addr_eq(got, want))
        };
        assert!(is(1, body) && is(2, other_body) && is(3, body));
        assert!(TestSpec::new(2)
            .with_peer_body(2, body)
            .body_for(1)
            .is_none());
        let own: Vec<_> = spec.peer_bodies().map(|(p, _)| p).collect();
        assert_eq!(own, [PeerId(2)]);
    }

    #[test]
    fn a_pin_to_auto_is_no_pin() {
        let spec = TestSpec::new(1).with_backend(BackendKind::Userspace);
        assert_eq!(spec.backend(), Some(BackendKind::Userspace));
        assert_eq!(spec.with_backend(BackendKind::Auto).backend(), None);
    }

    #[test]
    fn ignore_with_and_without_reason() {
        let spec = TestSpec::new(1).with_ignore(None);
        assert!(spec.is_ignored());
        assert_eq!(spec.ignore_reason(), None);
        let spec = TestSpec::new(1).with_ignore(Some("needs 6.1"));
        assert_eq!(spec.ignore_reason(), Some("needs 6.1"));
    }

    #[test]
    fn validate_refuses_what_the_attribute_refuses() {
        let imp = LinkImpairment::new;
        let bad = [
            TestSpec::new(2).with_link(1, 3, imp()),
            TestSpec::new(2).with_link(0, 1, imp()),
            TestSpec::new(2).with_link(2, 2, imp()),
            TestSpec::new(2).with_link(1, 2, imp().with_loss(150.0)),
            TestSpec::new(2).with_default_impairment(imp().with_limit(0)),
            TestSpec::new(2).with_peer_body(3, body),
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
    }

    #[test]
    fn def_path_drops_the_crate_name() {
        fn spec() -> TestSpec {
            TestSpec::new(1)
        }
        let def = |module_path| TestDef {
            name: "t",
            module_path,
            file: "f.rs",
            line: 1,
            spec,
        };
        assert_eq!(def("mycrate::net::sub").path(), "net::sub::t");
        assert_eq!(def("mycrate").path(), "t");
    }
}
