//! The userspace backend: the engine (`crate::engine`) switches and impairs every
//! frame between the hub-side veth ends, in place of the kernel's bridge and traffic
//! control. Nothing here needs sch_netem, HTB or any other qdisc: every impairment
//! works on every kernel that has veth and AF_PACKET, in an unprivileged user
//! namespace too.
//!
//! The hub ports stay plain interfaces (no bridge), up; the engine opens one packet
//! socket on each. The hub's own IPv6 is switched off, so its kernel sends no router
//! solicitations or MLD reports of its own onto the ports (they would only be noise in
//! captures; the engine never forwards what the hub itself sends).

use std::sync::Arc;

use crate::backend::{FateCounts, Hub, LinkStats, PeerPort};
use crate::engine::Engine;
use crate::error::Result;
use crate::impairment::LinkImpairment;
use crate::link::Link;
use crate::namespace::{NetNs, NsThread};

/// The userspace data plane of one network.
#[derive(Debug)]
pub(crate) struct UserspaceBackend {
    // Dropped first: the engine's thread and sockets go before the hub's descriptor.
    engine: Engine,
    hub: Arc<NetNs>,
}

impl UserspaceBackend {
    /// Starts the engine thread for the network `name`.
    pub(crate) async fn start(hub: Hub<'_>, name: &str) -> Result<UserspaceBackend> {
        quiet_hub(hub.ns);
        let engine = Engine::start(&format!("{name}-engine"), hub.capture)?;
        Ok(UserspaceBackend {
            engine,
            hub: Arc::clone(hub.ns),
        })
    }

    /// Hub ports are enslaved to nothing: the engine is the switch.
    pub(crate) fn hub_port_controller(&self) -> Option<u32> {
        None
    }

    pub(crate) async fn add_peer(&mut self, peer: PeerPort) -> Result<()> {
        self.engine
            .add_port(peer.id, &self.hub, peer.hub_ifindex, peer.mac)
            .await
    }

    /// Every link between two peers can be realised.
    pub(crate) fn check_link(&self, _link: Link) -> Result<()> {
        Ok(())
    }

    /// Every valid impairment can be realised.
    pub(crate) async fn check_supported(&self, _impairment: &LinkImpairment) -> Result<()> {
        Ok(())
    }

    pub(crate) async fn set_impairment(
        &self,
        link: Link,
        to: &LinkImpairment,
        seed: u64,
    ) -> Result<()> {
        self.engine.set_link(link, to, seed).await
    }

    pub(crate) async fn set_cut(&self, link: Link, cut: bool) -> Result<()> {
        self.engine.set_cut(link, cut).await
    }

    /// The engine counts every link, impaired or not.
    pub(crate) fn link_stats(&self, link: Link) -> LinkStats {
        let c = self.engine.stats(link);
        let saturate = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        LinkStats {
            packets: saturate(c.delivered_packets),
            bytes: c.delivered_bytes,
            drops: saturate(
                c.dropped_loss + c.dropped_queue + c.dropped_partition + c.dropped_unreachable,
            ),
            overlimits: 0,
            qlen: saturate(c.queued_packets),
            backlog: saturate(c.queued_bytes),
            fates: Some(FateCounts {
                sent_packets: c.sent_packets,
                sent_bytes: c.sent_bytes,
                dropped_loss: c.dropped_loss,
                dropped_queue: c.dropped_queue,
                dropped_partition: c.dropped_partition,
                dropped_unreachable: c.dropped_unreachable,
                duplicated: c.duplicated,
                corrupted: c.corrupted,
                reordered: c.reordered,
                control_packets: c.control_packets,
            }),
        }
    }
}

/// Switches IPv6 off in the hub namespace (`net.ipv6.conf.{all,default}.disable_ipv6`,
/// written from a thread inside it: /proc/sys/net shows the opener's namespace). The
/// hub has no addresses and needs none; without this its kernel would send router
/// solicitations and MLD reports from every port. Best effort: a hub that keeps IPv6
/// only adds frames the engine ignores.
fn quiet_hub(hub: &Arc<NetNs>) {
    let hub = Arc::clone(hub);
    let done = NsThread::spawn("linkem-hub-sysctl".into(), move || {
        hub.enter().ok()?;
        for scope in ["default", "all"] {
            let path = format!("/proc/sys/net/ipv6/conf/{scope}/disable_ipv6");
            if let Err(e) = std::fs::write(&path, "1") {
                tracing::debug!("hub: cannot write {path}: {e}");
            }
        }
        Some(())
    });
    if let Ok(thread) = done {
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root (CAP_NET_ADMIN, or a user namespace): run with --ignored"]
    fn the_hub_runs_without_ipv6() {
        let (hub, _socket) = NetNs::create("the hub").unwrap();
        let hub = Arc::new(hub);
        let read = |hub: &Arc<NetNs>| {
            let hub = Arc::clone(hub);
            NsThread::spawn("linkem-test-sysctl".into(), move || {
                hub.enter().unwrap();
                ["default", "all"].map(|scope| {
                    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{scope}/disable_ipv6"))
                        .unwrap()
                        .trim()
                        .to_string()
                })
            })
            .unwrap()
            .join()
            .unwrap()
        };
        // A new namespace starts with IPv6 on; the hub switches it off.
        assert_eq!(read(&hub), ["0", "0"]);
        quiet_hub(&hub);
        assert_eq!(read(&hub), ["1", "1"]);
    }
}
