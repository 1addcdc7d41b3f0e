//! Runs one [`TestSpec`]: builds its network, applies its impairments, runs the bodies
//! (each peer's in its namespace, the controller beside them), stops everything on the
//! first failure or at the timeout, and tears the network down.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::error::Error;
use crate::ip::Subnet;
use crate::network::{Link, Network, PeerId};
use crate::testing::peer::{Controller, Peer, Rendezvous};
use crate::testing::spec::{BodyFailure, ControllerFuture, Outcome, TestSpec};

/// The timeout of a test that does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a test did not pass.
#[derive(Debug)]
pub enum Failure {
    /// The test cannot run here (a kernel feature is missing); the text says why.
    Unsupported(String),
    /// The test failed; the text explains (which peer, what, and the network's state).
    Failed(String),
}

/// Runs a test to completion.
pub async fn run(spec: TestSpec) -> Result<(), Failure> {
    let timeout = spec.timeout().unwrap_or(DEFAULT_TIMEOUT);
    if let Some(body) = spec.standalone() {
        return match tokio::time::timeout(timeout, caught(body(()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) if f.unsupported => Err(Failure::Unsupported(f.message)),
            Ok(Err(f)) => Err(Failure::Failed(f.message)),
            Err(_) => Err(Failure::Failed(format!(
                "timed out after {timeout:?} (set `timeout = \"...\"` to change it)"
            ))),
        };
    }
    let network = build(&spec).await.map_err(|e| match e {
        Error::Unsupported { .. } => Failure::Unsupported(e.to_string()),
        e => Failure::Failed(format!("building the test's network failed: {e}")),
    })?;
    let network = Arc::new(network);
    let outcome = tokio::time::timeout(timeout, run_bodies(&spec, &network)).await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) if f.unsupported => return Err(Failure::Unsupported(f.message)),
        Ok(Err(f)) => Some(f.message),
        Err(_) => Some(format!(
            "timed out after {timeout:?} (set `timeout = \"...\"` to change it)"
        )),
    };
    // The bodies' futures are gone by now (finished or dropped, which cancels the peer
    // threads); describe the network before it goes.
    let result = match failure {
        None => Ok(()),
        Some(message) => {
            let report = describe(&spec, &network).await;
            Err(Failure::Failed(format!("{message}\n\n{report}")))
        }
    };
    drop(network);
    result
}

fn subnet_of(spec: &TestSpec) -> Subnet {
    match spec.subnet() {
        Some((addr, len)) => Subnet::new(addr, len),
        None => Subnet::new(std::net::Ipv4Addr::new(10, 0, 0, 0).into(), 24),
    }
}

async fn build(spec: &TestSpec) -> Result<Network, Error> {
    let mut network = Network::new(subnet_of(spec)).await?;
    for _ in 0..spec.peers() {
        network.add_peer().await?;
    }
    for (link, imp) in effective_links(spec) {
        network.apply_impairment(link, imp).await?;
    }
    Ok(network)
}

/// Every direction with its impairment: the specific ones, and the default for the
/// others. The test's `seed`, when set, seeds every netem that has no seed of its own,
/// each link differently (`seed + a * 65536 + b`), so a run can be replayed.
fn effective_links(spec: &TestSpec) -> Vec<(Link, crate::tc::impairment::LinkImpairment)> {
    let n = spec.peers();
    let mut out = Vec::new();
    for a in 1..=n {
        for b in 1..=n {
            if a == b {
                continue;
            }
            let specific = spec.link(a, b);
            if let Some(imp) = specific.or(spec.default_impairment()) {
                let mut imp = imp.clone();
                if let (Some(seed), None, true) = (spec.seed(), imp.seed, imp.needs_netem()) {
                    imp.seed = Some(seed.wrapping_add(((a as u64) << 16) + b as u64));
                }
                out.push((Link::new(PeerId(a), PeerId(b)), imp));
            }
        }
    }
    out
}

async fn run_bodies(spec: &TestSpec, network: &Arc<Network>) -> Result<(), BodyFailure> {
    let bodies: Vec<_> = (1..=spec.peers())
        .filter_map(|n| spec.body_for(n).map(|b| (PeerId(n), b)))
        .collect();
    let rendezvous = Arc::new(Rendezvous::new(bodies.len()));
    // Each future says whether it is the controller's.
    let mut running: FuturesUnordered<BoxFuture<'static, (bool, Result<(), BodyFailure>)>> =
        FuturesUnordered::new();
    for (peer, body) in bodies {
        let rendezvous = Arc::clone(&rendezvous);
        let network = Arc::clone(network);
        running.push(Box::pin(async move {
            let outcome = network
                .run_in_namespace(peer, move |ctx| body(Peer::new(ctx, rendezvous)))
                .await;
            let outcome = match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(f)) => Err(BodyFailure {
                    message: format!("peer {peer} failed: {}", f.message),
                    ..f
                }),
                Err(Error::PeerPanicked { peer, message }) => {
                    Err(format!("peer {peer} panicked: {message}").into())
                }
                Err(e) => Err(format!("peer {peer} could not run: {e}").into()),
            };
            (false, outcome)
        }));
    }
    if let Some(controller) = spec.controller() {
        let handle = Controller::new(Arc::clone(network), Arc::clone(&rendezvous));
        running.push(Box::pin(async move {
            let outcome = caught(controller(handle)).await.map_err(|f| BodyFailure {
                message: format!("the controller failed: {}", f.message),
                ..f
            });
            (true, outcome)
        }));
    }
    // The first failure ends the test; dropping `running` cancels the other bodies.
    // With a controller, the test ends when the controller returns (peers that serve
    // forever are then cancelled); without one, when every body has returned.
    while let Some((is_controller, outcome)) = running.next().await {
        outcome?;
        if is_controller {
            break;
        }
    }
    Ok(())
}

/// Runs a body, turning a panic into a failure with its message.
async fn caught(body: ControllerFuture) -> Outcome {
    match std::panic::AssertUnwindSafe(body).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!("panicked: {}", crate::network::panic_message(&*panic)).into()),
    }
}

/// The topology, each link's configured impairment, and the kernel's counters.
async fn describe(spec: &TestSpec, network: &Network) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "network: {} peers in {}",
        network.peer_count(),
        network.subnet()
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
    fn links_take_the_default_and_the_test_seed() {
        let lossy = LinkImpairment::new().with_loss(1.0);
        let spec = TestSpec::new(3)
            .with_seed(7)
            .with_default_impairment(lossy.clone())
            .with_link(
                1,
                2,
                LinkImpairment::new()
                    .with_latency(Duration::from_millis(5))
                    .with_seed(99),
            );
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
        assert_eq!(of(1, 2).seed, Some(99), "a link's own seed wins");
        assert_eq!(
            of(1, 2).latency,
            5_000,
            "the specific link replaces the default"
        );
        assert_eq!(of(2, 1).loss, 1.0);
        assert_eq!(of(2, 1).seed, Some(7 + (2 << 16) + 1));
        assert_ne!(
            of(2, 3).seed,
            of(3, 2).seed,
            "each direction its own stream"
        );
    }
}
