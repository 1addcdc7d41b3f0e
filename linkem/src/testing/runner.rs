//! Runs one [`TestSpec`]: builds its network, applies its impairments, runs the bodies
//! (each peer's in its namespace, the controller beside them), stops everything on the
//! first failure or at the timeout, and tears the network down.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::error::Error;
use crate::ip::Subnet;
use crate::network::{Link, Network, PeerId};
use crate::tc::impairment::LinkImpairment;
use crate::testing::peer::{Controller, Peer, Rendezvous, Who};
use crate::testing::spec::{ControllerFuture, TestSpec};
use crate::testing::Failure;

/// The timeout of a test that does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a test to completion.
///
/// Panics on the calling thread and on the peers' threads go to the calling thread's
/// [`Capture`](crate::testing::capture::Capture), if it has one (see
/// [`capture`](crate::testing::capture)).
pub async fn run(spec: &TestSpec) -> Result<(), Failure> {
    let timeout = spec.timeout().unwrap_or(DEFAULT_TIMEOUT);
    if let Some(body) = spec.standalone() {
        return within(timeout, caught(body(())), String::new).await;
    }
    let network = build(spec)
        .await
        .map_err(|e| match Failure::from_error(&e) {
            Failure::Failed(m) => {
                Failure::Failed(format!("building the test's network failed: {m}"))
            }
            unsupported => unsupported,
        })?;
    let network = Arc::new(network);
    let rendezvous = Arc::new(Rendezvous::new(
        (1..=spec.peers())
            .filter(|&n| spec.body_for(n).is_some())
            .map(|n| Who::Peer(PeerId(n)))
            .chain(spec.controller().map(|_| Who::Controller)),
    ));
    let outcome = within(timeout, run_bodies(spec, &network, &rendezvous), || {
        rendezvous.still_running()
    })
    .await;
    // The bodies' futures are gone by now (finished or dropped, which cancels the peer
    // threads); describe the network before it goes.
    let result = match outcome {
        Err(Failure::Failed(message)) => {
            let report = describe(spec, &network).await;
            Err(Failure::Failed(format!("{message}\n\n{report}")))
        }
        other => other,
    };
    drop(network);
    result
}

/// `body` within `timeout`: the one place a timeout becomes a failure. `still_running`
/// says, when it runs out, which bodies were still going and on what they waited.
async fn within(
    timeout: Duration,
    body: impl Future<Output = Result<(), Failure>>,
    still_running: impl FnOnce() -> String,
) -> Result<(), Failure> {
    match tokio::time::timeout(timeout, body).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let mut message =
                format!("timed out after {timeout:?} (set `timeout = \"...\"` to change it)");
            let running = still_running();
            if !running.is_empty() {
                let _ = write!(message, "; still running:\n{}", running.trim_end());
            }
            Err(Failure::Failed(message))
        }
    }
}

fn subnet_of(spec: &TestSpec) -> Subnet {
    match spec.subnet() {
        Some((addr, len)) => Subnet::new(addr, len),
        None => Subnet::new(std::net::Ipv4Addr::new(10, 0, 0, 0).into(), 24),
    }
}

/// The network of the spec: on its pinned backend (else Auto, which takes the trial's
/// backend, `testing::trial`), seeded by its `seed` through the builder (else the
/// trial's seed; `LINKEM_SEED` overrides either), its peers, then the default
/// impairment on every direction at once (`apply_impairment_all`, one request stream
/// per source peer, concurrently), then the directions with their own. Each link's
/// random stream is derived by the network from its seed and the link.
async fn build(spec: &TestSpec) -> Result<Network, Error> {
    let mut builder = Network::builder(subnet_of(spec)).backend(spec.backend().unwrap_or_default());
    if let Some(seed) = spec.seed() {
        builder = builder.seed(seed);
    }
    let mut network = builder.build().await?;
    for _ in 0..spec.peers() {
        network.add_peer().await?;
    }
    if let Some(default) = spec.default_impairment().filter(|_| spec.peers() > 1) {
        network.apply_impairment_all(default.clone()).await?;
    }
    for (link, imp) in spec.links() {
        network.apply_impairment(link, imp.clone()).await?;
    }
    Ok(network)
}

/// Every direction with its impairment: the specific ones, and the default for the
/// others.
fn effective_links(spec: &TestSpec) -> Vec<(Link, LinkImpairment)> {
    let n = spec.peers();
    let mut out = Vec::new();
    for a in 1..=n {
        for b in (1..=n).filter(|&b| b != a) {
            if let Some(imp) = spec.impairment(a, b) {
                out.push((Link::new(PeerId(a), PeerId(b)), imp.clone()));
            }
        }
    }
    out
}

async fn run_bodies(
    spec: &TestSpec,
    network: &Arc<Network>,
    rendezvous: &Arc<Rendezvous>,
) -> Result<(), Failure> {
    // Each future says whose it is.
    let mut running: FuturesUnordered<BoxFuture<'static, (Who, Result<(), Failure>)>> =
        FuturesUnordered::new();
    for (peer, body) in (1..=spec.peers()).filter_map(|n| spec.body_for(n).map(|b| (PeerId(n), b)))
    {
        let rendezvous = Arc::clone(rendezvous);
        let network = Arc::clone(network);
        running.push(Box::pin(async move {
            // On the peer's thread, whose panics go where this thread's go
            // (`run_in_namespace` attaches it to this thread's capture).
            let outcome = network
                .run_in_namespace(peer, move |ctx| body(Peer::new(ctx, rendezvous)))
                .await;
            let outcome = match outcome {
                Ok(outcome) => outcome.map_err(|f| f.within(format_args!("peer {peer} failed"))),
                Err(Error::PeerPanicked { peer, message }) => {
                    Err(format!("peer {peer} panicked: {message}").into())
                }
                Err(e) => {
                    Err(Failure::from_error(&e).within(format_args!("peer {peer} could not run")))
                }
            };
            (Who::Peer(peer), outcome)
        }));
    }
    if let Some(controller) = spec.controller() {
        let handle = Controller::new(Arc::clone(network), Arc::clone(rendezvous));
        running.push(Box::pin(async move {
            let outcome = caught(controller(handle))
                .await
                .map_err(|f| f.within("the controller failed"));
            (Who::Controller, outcome)
        }));
    }
    // The first failure ends the test; dropping `running` cancels the other bodies.
    // With a controller, the test ends when the controller returns (peers that serve
    // forever are then cancelled); without one, when every body has returned.
    while let Some((who, outcome)) = running.next().await {
        rendezvous.finished(who);
        outcome?;
        if who == Who::Controller {
            break;
        }
    }
    Ok(())
}

/// Runs a body, turning a panic into a failure with its message.
async fn caught(body: ControllerFuture) -> Result<(), Failure> {
    match std::panic::AssertUnwindSafe(body).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!("panicked: {}", crate::network::panic_message(&*panic)).into()),
    }
}

/// The topology and backend, each link's configured impairment, and the backend's
/// counters of it.
async fn describe(spec: &TestSpec, network: &Network) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "network: {} peers in {} ({} backend, seed {})",
        network.peer_count(),
        network.subnet(),
        network.backend(),
        network.seed()
    );
    for peer in network.peers() {
        if let Ok(addr) = network.addr(peer) {
            let _ = writeln!(out, "  peer {peer}: {addr}");
        }
    }
    let links = effective_links(spec);
    if links.is_empty() {
        let _ = writeln!(out, "links: no impairment configured");
    }
    for (link, imp) in links {
        let _ = write!(
            out,
            "  link {link}: {}",
            crate::tc::impairment::summary(&imp)
        );
        match network.link_stats(link).await {
            Ok(Some(stats)) => {
                let _ = writeln!(out, " | {stats}");
            }
            Ok(None) => {
                let _ = writeln!(out);
            }
            Err(e) => {
                let _ = writeln!(out, " | counters unavailable: {e}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tc::impairment::LinkImpairment;
    use std::time::Duration;

    #[test]
    fn links_take_the_default_unless_they_have_their_own() {
        let lossy = LinkImpairment::new().with_loss(1.0);
        let own = LinkImpairment::new()
            .with_latency(Duration::from_millis(5))
            .with_seed(99);
        let spec = TestSpec::new(3)
            .with_seed(7)
            .with_default_impairment(lossy.clone())
            .with_link(1, 2, own.clone());
        let links = effective_links(&spec);
        assert_eq!(links.len(), 6, "every direction of 3 peers");
        let of = |a, b| {
            links
                .iter()
                .find(|(l, _)| *l == Link::new(PeerId(a), PeerId(b)))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(
            of(1, 2),
            own,
            "the specific link replaces the default whole"
        );
        assert_eq!(
            of(2, 1),
            lossy,
            "the test's seed is the network's, not written into impairments"
        );
        assert!(effective_links(&TestSpec::new(3)).is_empty());
    }
}
