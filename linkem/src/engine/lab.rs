//! A hand-built hub and peers for the engine's tests and measurements: a hub
//! namespace, peers with `eth0` (a fixed MAC, an IPv4 and an IPv6 address) paired with
//! `p<n>` in the hub, switched by an [`Engine`] or, for comparison, by a kernel bridge
//! (today's kernel backend). Built from the crate's internals only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::{Engine, LinkCounters};
use crate::capture::CaptureConfig;
use crate::error::Result;
use crate::namespace::NetNs;
use crate::netlink::{map_rtnetlink, Driver, Rtnl};
use crate::network::{Link, PeerId};
use crate::tc::impairment::LinkImpairment;

/// The bridge's index in a bridged lab's hub.
const BRIDGE_INDEX: u32 = 2;

pub(crate) fn mac(peer: usize) -> [u8; 6] {
    [0x02, 0x6c, 0x6b, 0, 0, peer as u8]
}
pub(crate) fn v4(peer: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 99, 0, peer as u8))
}
pub(crate) fn v6(peer: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, peer as u16))
}
pub(crate) fn hub_index(peer: usize) -> u32 {
    10 + peer as u32
}

/// A hub namespace and `n` peers, each `eth0` (MAC [`mac`]) paired with `p<n>` in the
/// hub, switched by an engine.
pub(crate) struct Lab {
    // Drop order: the engine first (closing its sockets), then namespaces, then the
    // netlink driver.
    /// `None` for a bridged lab.
    pub(crate) engine: Option<Engine>,
    pub(crate) peers: Vec<Arc<NetNs>>,
    pub(crate) hub: Arc<NetNs>,
    pub(crate) hub_rtnl: Rtnl,
    pub(crate) runtime: tokio::runtime::Runtime,
    _driver: Driver,
}

impl Lab {
    /// `n` peers switched by an engine.
    pub(crate) fn new(n: usize) -> Lab {
        Lab::build(n, false, None)
    }

    /// `n` peers switched by an engine that writes `capture`.
    pub(crate) fn with_capture(n: usize, capture: &CaptureConfig) -> Lab {
        Lab::build(n, false, Some(capture))
    }

    /// `n` peers on a kernel bridge, the kernel backend's path.
    pub(crate) fn bridged(n: usize) -> Lab {
        Lab::build(n, true, None)
    }

    fn build(n: usize, bridged: bool, capture: Option<&CaptureConfig>) -> Lab {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let driver = Driver::start("linkem-engine-test-nl".into()).unwrap();
        let (hub, socket) = NetNs::create("the hub").unwrap();
        let hub = Arc::new(hub);
        let hub_rtnl = driver.connect(socket).unwrap();
        let engine = (!bridged).then(|| Engine::start("linkem-engine-lab", capture).unwrap());
        if bridged {
            let bridge = LinkBridge::new("br0").index(BRIDGE_INDEX).up().build();
            runtime
                .block_on(hub_rtnl.handle().link().add(bridge).execute())
                .unwrap();
        }
        let mut peers = Vec::new();
        for i in 1..=n {
            let (ns, socket) = NetNs::create(&format!("peer {i}")).unwrap();
            let rtnl = driver.connect(socket).unwrap();
            runtime
                .block_on(add_peer(&hub_rtnl, &ns, &rtnl, i, bridged))
                .unwrap();
            if let Some(engine) = &engine {
                runtime
                    .block_on(engine.add_port(PeerId(i), &hub, hub_index(i), mac(i)))
                    .unwrap();
            }
            peers.push(Arc::new(ns));
        }
        Lab {
            engine,
            peers,
            hub,
            hub_rtnl,
            runtime,
            _driver: driver,
        }
    }

    pub(crate) fn ns(&self, peer: usize) -> Arc<NetNs> {
        Arc::clone(&self.peers[peer - 1])
    }

    pub(crate) fn set_link(&self, from: usize, to: usize, imp: &LinkImpairment) {
        self.runtime
            .block_on(self.engine().set_link(link(from, to), imp, 7))
            .unwrap();
    }

    pub(crate) fn stats(&self, from: usize, to: usize) -> LinkCounters {
        self.engine().stats(link(from, to))
    }

    /// The engine (panics in a bridged lab).
    pub(crate) fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("a bridged lab has no engine")
    }
}

pub(crate) fn link(from: usize, to: usize) -> Link {
    Link::new(PeerId(from), PeerId(to))
}

async fn add_peer(hub: &Rtnl, ns: &NetNs, rtnl: &Rtnl, i: usize, bridged: bool) -> Result<()> {
    let peer_end = LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0".to_string())
        .index(2)
        .address(mac(i).to_vec())
        .setns_by_fd(ns.raw_fd())
        .build();
    let mut veth = LinkVeth::new(&format!("p{i}"), "eth0").index(hub_index(i));
    if bridged {
        veth = veth.controller(BRIDGE_INDEX);
    }
    let veth = veth
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_end)))
        .build();
    hub.handle()
        .link()
        .add(veth)
        .execute()
        .await
        .map_err(|e| map_rtnetlink(|| format!("veth of peer {i}"), e))?;
    for (addr, len) in [(v4(i), 24), (v6(i), 64)] {
        let mut req = rtnl.handle().address().add(2, addr, len);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute()
            .await
            .map_err(|e| map_rtnetlink(|| format!("address of peer {i}"), e))?;
    }
    for index in [2, 1] {
        rtnl.handle()
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| map_rtnetlink(|| format!("link up in peer {i}"), e))?;
    }
    Ok(())
}

/// Runs `f` on a thread inside `ns`.
pub(crate) fn in_ns<T: Send + 'static>(
    ns: Arc<NetNs>,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::spawn(move || {
        ns.enter().unwrap();
        f()
    })
}

/// A UDP echo server in a peer; stops when dropped.
pub(crate) struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub(crate) fn start(ns: Arc<NetNs>, addr: IpAddr, port: u16) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = in_ns(ns, move || {
            let socket = UdpSocket::bind((addr, port)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        ready.recv().unwrap();
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `count` datagrams from a peer to `to` one after another, each waiting up to
/// `wait` for its echo; the round-trip times of those answered.
pub(crate) fn pings(ns: Arc<NetNs>, to: SocketAddr, count: usize, wait: Duration) -> Vec<Duration> {
    in_ns(ns, move || {
        let any: IpAddr = if to.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind((any, 0)).unwrap();
        socket.connect(to).unwrap();
        socket.set_read_timeout(Some(wait)).unwrap();
        let mut rtts = Vec::new();
        let mut buf = [0u8; 64];
        for k in 0..count as u32 {
            let start = Instant::now();
            socket.send(&k.to_be_bytes()).unwrap();
            // Skip late echoes of earlier datagrams.
            let deadline = start + wait;
            while Instant::now() < deadline {
                match socket.recv(&mut buf) {
                    Ok(4) if buf[..4] == k.to_be_bytes() => {
                        rtts.push(start.elapsed());
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
        rtts
    })
    .join()
    .unwrap()
}

/// `link`'s counters once nothing is in flight on it any more: a snapshot taken while a
/// copy moves between two counters (say, from queued to delivered) is a packet apart.
pub(crate) fn settled(lab: &Lab, from: usize, to: usize) -> LinkCounters {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = lab.stats(from, to);
        if (s.balanced() && s.queued_packets == 0) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
