//! linkem: in-process network emulation for testing distributed systems on Linux.
//!
//! Each peer of a network gets its own network namespace with a real interface
//! (`eth0`) and address; peers meet in a private hub namespace; what each peer sends to
//! each other peer can be delayed, jittered, lost, duplicated, corrupted, reordered,
//! rate-limited or cut. Code runs in-process: a peer's future runs on a thread inside
//! that peer's namespace, so real sockets, the kernel's TCP and unmodified programs see
//! the emulated network, while the test still shares channels and state with every
//! peer. `#[linkem::test]` and the `linkem-test` harness build such networks for tests;
//! everything below works in a plain program too.
//!
//! Contents: [networks and peers](#networks-and-peers), [impairments](#impairments),
//! [backends](#backends), [partitions](#partitions), [counters](#counters),
//! [seeds and replay](#seeds-and-replay), [capture](#capture),
//! [code and programs in peers](#code-and-programs-in-peers),
//! [privileges](#privileges), [errors](#errors), [tracing](#tracing).
//!
//! Modules: [`network`] ([`Network`], its builder, peers and links), [`impairment`]
//! ([`LinkImpairment`](impairment::LinkImpairment), also at the seed API's path
//! `tc::impairment`), [`ip`] ([`Subnet`](ip::Subnet)), [`capture`], [`userns`],
//! [`error`]; [`test`] is the attribute, whose bodies get a [`Peer`] or a
//! [`Controller`].
//!
//! # Networks and peers
//!
//! A [`Network`] numbers its peers 1, 2, ... in the order they are added and gives each
//! the next host address of its [`Subnet`](ip::Subnet) (IPv4 or IPv6). A [`Link`] is
//! one direction, `source -> destination`.
//!
//! ```no_run
//! use linkem::network::{Link, Network};
//! use linkem::tc::impairment::LinkImpairment;
//! use std::time::Duration;
//!
//! # async fn demo() -> linkem::Result<()> {
//! let mut net = Network::new(linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24)).await?;
//! let (a, b) = (net.add_peer().await?, net.add_peer().await?);
//! net.apply_impairment(Link::new(a, b), LinkImpairment::new().with_latency(Duration::from_millis(50)))
//!     .await?;
//! let addr_b = net.addr(b)?;
//! let connected = net
//!     .run_in_namespace(a, move |_ctx| async move {
//!         tokio::net::TcpStream::connect((addr_b, 80)).await.is_ok()
//!     })
//!     .await?;
//! # let _ = connected;
//! # Ok(())
//! # }
//! ```
//!
//! Dropping the network (or awaiting [`Network::shutdown`]) joins its threads and closes
//! its descriptors; the kernel then removes every namespace, interface and qdisc it
//! made, even after a SIGKILL of the process (namespaces are held by descriptors, never
//! bind mounts). Nothing is created in the host namespace.
//!
//! # Impairments
//!
//! A [`LinkImpairment`](impairment::LinkImpairment) says what one direction does to
//! packets. Its fields keep the seed API's units (`latency` and `jitter` in µs, `loss`
//! and `duplicate` in %, `bandwidth_mbit_s`); typed builders take [`Duration`],
//! [`Percent`](impairment::Percent) and [`Rate`](impairment::Rate). Each field's doc
//! names the tc command it corresponds to and how the userspace backend realises it.
//! Every value is validated before anything changes.
//!
//! ```no_run
//! use linkem::impairment::{Distribution, LinkImpairment, Rate};
//! use linkem::network::{Link, Network};
//! use std::time::Duration;
//!
//! # async fn demo(net: &Network, a: linkem::PeerId, b: linkem::PeerId) -> linkem::Result<()> {
//! // tc: netem delay 40ms 5ms distribution normal loss 0.5%, tbf rate 50mbit
//! let wan = LinkImpairment::new()
//!     .with_latency(Duration::from_millis(40))
//!     .with_jitter(Duration::from_millis(5))
//!     .with_distribution(Distribution::Normal)
//!     .with_loss(0.5)
//!     .with_rate(Rate::mbit(50));
//! net.apply_impairment(Link::new(a, b), wan.clone()).await?; // a -> b only
//! net.apply_impairment_both(a, b, wan.clone()).await?; // both directions
//! net.apply_impairment_all(wan).await?; // every direction of every pair
//! net.clear_impairment(Link::new(a, b)).await?; // a plain wire again
//! # Ok(())
//! # }
//! ```
//!
//! A change applies to the next packet; what is queued keeps its fate. The same value
//! twice is a no-op; a refused change leaves the link as it was.
//!
//! [`Duration`]: std::time::Duration
//!
//! # Backends
//!
//! Two data planes realise the links, behind one API ([`BackendKind`]):
//!
//! - **Kernel**: Linux traffic control in each source peer's namespace (an HTB root,
//!   per destination a netem and a TBF, u32 filters; IFB devices for duplicating
//!   links), a bridge in the hub, all configured over rtnetlink. Delay, loss and the
//!   rest need the `sch_netem` module; a rate alone does not.
//! - **Userspace**: a switch in the test process, one AF_PACKET socket on each hub-side
//!   veth end and one thread per network, deciding every wire packet's fate with
//!   netem's and TBF's algorithms. It needs no qdisc, so every impairment works on
//!   kernels without `sch_netem` (WSL2, many cloud and container kernels) and in an
//!   unprivileged user namespace.
//! - **Auto** (the default): kernel where `sch_netem` works, else userspace.
//!
//! Force one per network with [`NetworkBuilder::backend`](network::NetworkBuilder::backend),
//! or for a whole run with `LINKEM_BACKEND=kernel` (or `userspace`, `auto`), which
//! applies to networks that leave it at `Auto`:
//!
//! ```no_run
//! use linkem::network::{BackendKind, Network};
//!
//! # async fn demo() -> linkem::Result<()> {
//! let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
//! let net = Network::builder(subnet).backend(BackendKind::Userspace).build().await?;
//! assert_eq!(net.backend(), BackendKind::Userspace);
//! # Ok(())
//! # }
//! ```
//!
//! Peers see the same `eth0`, MTU and addresses on both. What cannot mean exactly the
//! same (random streams, netem's correlation quirk, jitter with a shaper, `gap` without
//! `reorder`, timer precision, counters) is listed in the [`impairment`] module docs and
//! at each field.
//!
//! # Partitions
//!
//! A cut drops every IP packet of a direction and keeps its impairment for the heal;
//! ARP still passes, so a heal works at once.
//!
//! ```no_run
//! # async fn demo(net: &linkem::Network, a: linkem::PeerId, b: linkem::PeerId) -> linkem::Result<()> {
//! use linkem::Link;
//! net.partition(a, b).await?; // both ways
//! net.heal(a, b).await?;
//! net.partition_one_way(Link::new(a, b)).await?; // b still reaches a
//! net.heal_one_way(Link::new(a, b)).await?;
//! net.isolate(a).await?; // a from everyone, both ways
//! net.rejoin(a).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Counters
//!
//! [`Network::link_stats`] reads a link's counters at any time ([`LinkStats`]: packets
//! and bytes delivered, drops, what is queued). The userspace backend counts every
//! link, and every cause ([`FateCounts`](network::FateCounts): dropped by loss, by a
//! full queue, by a partition; duplicated, corrupted, reordered); the kernel backend
//! reads the link's qdisc, which only an impaired or cut link has.
//!
//! ```no_run
//! # async fn demo(net: &linkem::Network, a: linkem::PeerId, b: linkem::PeerId) -> linkem::Result<()> {
//! if let Some(stats) = net.link_stats(linkem::Link::new(a, b)).await? {
//!     println!("{a} -> {b}: {stats}"); // a sentence, for logs and reports
//!     if let Some(fates) = stats.fates {
//!         println!("lost {} of {}", fates.dropped_loss, fates.sent_packets);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Seeds and replay
//!
//! Every network has a seed ([`Network::seed`]): random unless set by
//! [`NetworkBuilder::seed`](network::NetworkBuilder::seed) or, for a whole run, by
//! `LINKEM_SEED` (decimal or `0x` hex), which wins over both so that a failure can be
//! replayed without editing code. On the userspace backend each link's random stream is
//! derived from (seed, source, destination): for a given seed the k-th packet on a link
//! meets the same fate (lost, duplicated, corrupted, reordered, the delay it draws)
//! whatever other links carry. A link's own
//! [`seed`](impairment::LinkImpairment::seed) overrides the network's; on the kernel
//! backend that is the seed netem gets (`TCA_NETEM_PRNG_SEED`, honoured from Linux 6.6
//! on), and a link without one gets the one the network derives for it. netem seeds
//! every draw but the bit a corruption flips (the kernel's own generator picks it), so
//! on the kernel backend a corrupted packet's fate at the receiver does not replay.
//!
//! ```no_run
//! # async fn demo() -> linkem::Result<()> {
//! use linkem::network::Network;
//! let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
//! let net = Network::builder(subnet).seed(42).build().await?;
//! // 42, unless LINKEM_SEED says otherwise.
//! eprintln!("replay with LINKEM_SEED={}", net.seed());
//! # Ok(())
//! # }
//! ```
//!
//! What replays: per-link sequences of fates, given the same packets on the link. What
//! does not: the interleaving of packets across links, the kernel's TCP timers and the
//! test's own scheduling, so a replay reproduces a failure whose traffic is the same.
//! The same seed gives different fates on the two backends.
//!
//! # Capture
//!
//! [`NetworkBuilder::capture`](network::NetworkBuilder::capture) writes a pcapng file
//! that Wireshark and tshark open, bounded in size
//! ([`CaptureConfig`](capture::CaptureConfig)); `LINKEM_CAPTURE=<dir>` turns it on for
//! every network of a run (one file per network, named after the process and the
//! network). The userspace backend describes one interface per link direction and
//! says, per packet, what happened to it; see [`capture`] for the format. In a test,
//! the attribute's `capture = "failed"` (or `LINKEM_CAPTURE_KEEP=failed` for a run)
//! keeps a network's file only when the test fails, and the failure report names it.
//!
//! ```no_run
//! # async fn demo() -> linkem::Result<()> {
//! use linkem::{capture::CaptureConfig, network::Network};
//! let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
//! let net = Network::builder(subnet)
//!     .capture(CaptureConfig::new("run.pcapng").with_max_bytes(16 << 20))
//!     .build()
//!     .await?;
//! assert_eq!(net.capture_path(), Some(std::path::Path::new("run.pcapng")));
//! # Ok(())
//! # }
//! ```
//!
//! # Code and programs in peers
//!
//! [`Network::run_in_namespace`] runs a future on a new thread inside a peer's
//! namespace, on a current-thread tokio runtime of its own, and returns its output; its
//! [`PeerContext`] gives the peer's id and address and the others'. A panic becomes
//! [`Error::PeerPanicked`] naming the peer. [`Network::command`] gives a
//! [`tokio::process::Command`] whose child runs inside the peer's namespace
//! ([`Network::std_command`] for the blocking kind), so unmodified programs (ping,
//! curl, iperf3, a database) take part:
//!
//! ```no_run
//! # async fn demo(net: &linkem::Network, a: linkem::PeerId, b: linkem::PeerId)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let target = net.addr(b)?.to_string();
//! let out = net.command(a, "ping")?.args(["-c", "3", &target]).output().await?;
//! assert!(out.status.success());
//! # Ok(())
//! # }
//! ```
//!
//! # Privileges
//!
//! linkem needs CAP_NET_ADMIN and CAP_SYS_ADMIN over the namespaces it creates: root
//! has them; a normal user gets them inside an unprivileged user namespace. The
//! `linkem-test` harness enters one by itself; a plain binary calls
//! [`userns::enter`] first thing in `main`, before any thread (and so before a tokio
//! runtime) exists:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     match linkem::userns::enter() {
//!         Ok(privileges) => eprintln!("running as {privileges}"),
//!         Err(e) => {
//!             eprintln!("{e}"); // says what to change: a sysctl, AppArmor, or root
//!             return std::process::ExitCode::FAILURE;
//!         }
//!     }
//!     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//!     runtime.block_on(async { /* build networks here */ });
//!     std::process::ExitCode::SUCCESS
//! }
//! ```
//!
//! It cannot work where unprivileged user namespaces are disabled
//! (`kernel.unprivileged_userns_clone=0`, `user.max_user_namespaces=0`) or stripped of
//! their capabilities (Ubuntu 23.10 and later,
//! `kernel.apparmor_restrict_unprivileged_userns=1`); its error says which and what to
//! do. The userspace backend works inside such a namespace; the kernel backend too,
//! where the kernel has `sch_netem`.
//!
//! # Errors
//!
//! Every fallible call returns [`Error`], whose `Display` (and `Debug`, so a `main`
//! returning `Result` prints it readably) is a sentence. Bad input is refused before
//! anything changes (`InvalidSubnet`, `SubnetExhausted`, `InvalidImpairment` naming the
//! field, value and rule, `UnknownPeer`, `SelfLink`, `InvalidSetting` for an environment
//! variable); kernel refusals keep the errno and the kernel's extended-ack text
//! (`Netlink`); a missing capability or module says what to do (`PermissionDenied`,
//! `Unsupported`).
//!
//! ```
//! use linkem::impairment::LinkImpairment;
//!
//! let err = LinkImpairment::new().with_loss(150.0).validate().unwrap_err();
//! assert!(matches!(err, linkem::Error::InvalidImpairment { field: "loss", .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "invalid impairment: loss = 150: must be a percentage within 0..=100"
//! );
//! ```
//!
//! # Tracing
//!
//! linkem emits [`tracing`](https://docs.rs/tracing) spans and events, at level debug,
//! for building a network (its backend, requested and chosen, and its seed), each peer
//! added, each impairment applied (with a tc-like summary), each cut and heal, and, on
//! the kernel backend, the bridge, each peer's tree, each IFB device and (at level
//! trace) every netlink request. They cost nothing unless the program installs a
//! subscriber; with `tracing-subscriber` (feature `env-filter`):
//!
//! ```ignore
//! // At the start of main or of a test; RUST_LOG=linkem=trace for every netlink request.
//! tracing_subscriber::fmt().with_env_filter("linkem=debug").init();
//! ```

mod backend;
pub mod capture;
mod engine;
pub mod error;
pub mod impairment;
pub mod ip;
mod link;
mod namespace;
mod netlink;
pub mod network;
mod packet_socket;
mod process;
pub mod tc;
// What `#[linkem::test]` registers and the harness runs: not a user API (users get
// `Peer` and `Controller` at the crate root). Its docs are not rendered, so rustdoc
// cannot resolve links into it (such as to the `TESTS` slice) and need not.
#[doc(hidden)]
#[allow(rustdoc::broken_intra_doc_links)]
pub mod testing;
pub mod userns;

pub use error::{Error, Result};
pub use network::{BackendKind, Link, LinkStats, Network, PeerContext, PeerId};
pub use testing::{Controller, Peer};

pub use linkem_macros::test;

/// The userspace engine's measurements, for the `engine-measure` example (needs root).
/// Not a public API.
#[doc(hidden)]
pub mod __engine_measure {
    pub use crate::engine::measure::run;
}

/// What `#[linkem::test]` expands to refers only to this module, so that the user's
/// crate needs no dependency but linkem. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use ::core::option::Option;
    pub use ::core::{file, line, module_path, option_env};
    pub use ::linkme::{self, distributed_slice};
    pub use std::boxed::Box;
    pub use std::future::Future;
    pub use std::net::IpAddr;
    pub use std::pin::Pin;
    pub use std::time::Duration;

    pub use crate::capture::CaptureKeep;
    pub use crate::impairment::{Distribution, LinkImpairment, LossModel, Percent, Rate};
    pub use crate::network::BackendKind;
    pub use crate::testing::spec::{
        ControllerBody, ControllerFuture, PeerBody, PeerFuture, StandaloneBody, TestDef, TestSpec,
        TESTS,
    };
    pub use crate::testing::{Controller, IntoTestOutcome, Peer};
}
