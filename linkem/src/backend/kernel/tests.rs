//! The kernel backend on real namespaces: seeds, and the capture.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::*;
use crate::network::{BackendKind, Network, SEED_ENV};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn subnet() -> crate::ip::Subnet {
    crate::ip::Subnet::new([10, 0, 0, 0].into(), 24)
}

#[test]
fn a_derived_seed_goes_only_to_a_netem() {
    let lossy = LinkImpairment::new().with_loss(5.0);
    assert_eq!(with_link_seed(&lossy, 7).seed, Some(7));
    assert_eq!(
        with_link_seed(&lossy.clone().with_seed(1), 7).seed,
        Some(1),
        "the impairment's own seed wins"
    );
    // A shaper alone has no netem (and this machine's kernel may have none).
    let shaped = LinkImpairment::new().with_rate(crate::impairment::Rate::mbit(10));
    assert_eq!(with_link_seed(&shaped, 7), shaped);
    assert!(!with_link_seed(&shaped, 7).needs_netem());
    // The seeded netem is the unseeded one plus TCA_NETEM_PRNG_SEED, nothing else.
    let plain = crate::tc::netem::options(&lossy, 1000);
    let seeded = crate::tc::netem::options(&with_link_seed(&lossy, 7), 1000);
    assert_eq!(&seeded[..plain.len()], &plain[..]);
    assert_eq!(seeded.len(), plain.len() + 12);
    assert_eq!(crate::tc::netem::dumped_seed(&seeded), Some(7));
}

/// The kernel's release as (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Datagrams `count` from peer 1 to peer 2 over a link with `loss`, on a kernel-backend
/// network seeded `seed`: the sequence numbers that did not arrive.
fn lost(seed: u64, count: u32) -> BTreeSet<u32> {
    runtime().block_on(async {
        let mut net = Network::builder(subnet())
            .backend(BackendKind::Kernel)
            .seed(seed)
            .build()
            .await
            .unwrap();
        let (a, b) = (net.add_peer().await.unwrap(), net.add_peer().await.unwrap());
        net.apply_impairment(Link::new(a, b), LinkImpairment::new().with_loss(10.0))
            .await
            .unwrap();
        let to = SocketAddr::new(net.addr(b).unwrap(), 7000);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let receiver = net.run_in_namespace(b, move |_| async move {
            let socket = UdpSocket::bind(to).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut got = BTreeSet::new();
            let mut buf = [0u8; 64];
            while let Ok(n) = socket.recv(&mut buf) {
                let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                assert_eq!(n, 32);
                got.insert(seq);
                if seq == count - 1 {
                    // The last one arrived: what is missing now is lost.
                    socket
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                }
            }
            got
        });
        let sender = async {
            ready.await.unwrap();
            net.run_in_namespace(a, move |_| async move {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                for seq in 0..count {
                    let mut datagram = [0u8; 32];
                    datagram[..4].copy_from_slice(&seq.to_be_bytes());
                    socket.send_to(&datagram, to).unwrap();
                    if seq % 64 == 63 {
                        // Paced, so that the receiver's socket buffer never overflows.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
            .await
            .unwrap();
        };
        let (got, ()) = tokio::join!(receiver, sender);
        let got = got.unwrap();
        (0..count).filter(|s| !got.contains(s)).collect()
    })
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN): run with --ignored"]
fn the_seed_probe_agrees_with_the_kernel_version() {
    runtime().block_on(async {
        let net = Network::builder(subnet())
            .backend(BackendKind::Kernel)
            .build()
            .await
            .unwrap();
        let netem = net.netem_supported().await;
        // The kernel backend probed it when it started.
        let honoured = SEEDS.get().copied().unwrap_or(false);
        if !netem {
            assert!(!honoured, "no netem, no seeds");
            assert!(
                net.seeds_reproducible(),
                "nothing random runs without netem"
            );
            assert_eq!(net.seed_note(), None);
            return;
        }
        // TCA_NETEM_PRNG_SEED arrived in Linux 6.6.
        assert_eq!(
            honoured,
            kernel_version() >= (6, 6),
            "{:?}",
            kernel_version()
        );
        assert_eq!(net.seeds_reproducible(), honoured);
        assert_eq!(net.seed_note().is_some(), !honoured);
        if let Some(note) = net.seed_note() {
            assert!(note.contains("ignores netem seeds"), "{note}");
        }
    });
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN): run with --ignored"]
fn seeded_netem_repeats_its_losses_where_the_kernel_honours_seeds() {
    let netem = netem_available().unwrap();
    if !netem {
        // Without netem the kernel backend refuses loss outright (what the kernel lanes
        // run instead is the comparison below).
        let refused = runtime().block_on(async {
            let mut net = Network::builder(subnet())
                .backend(BackendKind::Kernel)
                .build()
                .await
                .unwrap();
            let (a, b) = (net.add_peer().await.unwrap(), net.add_peer().await.unwrap());
            net.apply_impairment(Link::new(a, b), LinkImpairment::new().with_loss(10.0))
                .await
        });
        assert!(
            matches!(refused, Err(Error::Unsupported { .. })),
            "{refused:?}"
        );
        eprintln!("no sch_netem here: seeded losses are compared in the kernel lanes");
        return;
    }
    const COUNT: u32 = 2000;
    let first = lost(11, COUNT);
    let again = lost(11, COUNT);
    let other = lost(12, COUNT);
    // 10 % of 2000: far from none and from all (binomial, sd 13).
    for set in [&first, &again, &other] {
        assert!((100..=300).contains(&set.len()), "{} lost", set.len());
    }
    let honoured = SEEDS.get().copied().unwrap_or(false);
    let env_seed = std::env::var_os(SEED_ENV).is_some();
    if honoured {
        assert_eq!(first, again, "the same seed gave different losses");
        if env_seed {
            assert_eq!(first, other, "{SEED_ENV} seeds both networks alike");
        } else {
            assert_ne!(first, other, "another seed gave the same losses");
        }
    } else {
        // The kernel ignores the seed (as the probe said): two runs agreeing on some
        // 200 random positions out of 2000 would be a miracle.
        assert_ne!(
            first, again,
            "the probe says seeds are ignored, yet they repeat"
        );
    }
}

/// The UDP datagrams of a pcapng file: (interface name, direction flags, destination
/// port, first payload byte, timestamp), and the number of interface statistics blocks.
#[allow(clippy::type_complexity)]
fn udp_in_capture(path: &std::path::Path) -> (Vec<(String, u32, u16, u8, Duration)>, usize) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut reader = PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let (mut names, mut out, mut statistics) = (Vec::new(), Vec::new(), 0);
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            Block::InterfaceDescription(idb) => names.push(
                idb.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(epb) => {
                let f = &epb.data;
                // Ethernet, IPv4 (ihl 5), UDP.
                if f.len() < 43 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
                    continue;
                }
                let flags = epb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        EnhancedPacketOption::Flags(f) => Some(*f),
                        _ => None,
                    })
                    .unwrap_or(0);
                let port = u16::from_be_bytes([f[36], f[37]]);
                out.push((
                    names[epb.interface_id as usize].clone(),
                    flags & 3,
                    port,
                    f[42],
                    epb.timestamp,
                ));
            }
            Block::InterfaceStatistics(_) => statistics += 1,
            _ => {}
        }
    }
    (out, statistics)
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN): run with --ignored"]
fn the_capture_shows_what_each_peer_sent_and_what_it_received() {
    let dir = std::env::temp_dir().join(format!("linkem-kcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.pcapng");
    const COUNT: u8 = 40;
    runtime().block_on(async {
        let mut net = Network::builder(subnet())
            .backend(BackendKind::Kernel)
            .capture(crate::capture::CaptureConfig::new(&path))
            .build()
            .await
            .unwrap();
        let (a, b) = (net.add_peer().await.unwrap(), net.add_peer().await.unwrap());
        // A shaper alone (no netem needed) one way, a cut the other way.
        net.apply_impairment(
            Link::new(a, b),
            LinkImpairment::new().with_rate(crate::impairment::Rate::mbit(20)),
        )
        .await
        .unwrap();
        net.partition_one_way(Link::new(b, a)).await.unwrap();
        let (addr_a, addr_b) = (net.addr(a).unwrap(), net.addr(b).unwrap());
        let send = |to: SocketAddr| {
            move |_| async move {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                for seq in 0..COUNT {
                    socket.send_to(&[seq; 64], to).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let to_b = SocketAddr::new(addr_b, 7001);
        let to_a = SocketAddr::new(addr_a, 7002);
        // Receivers bound, so that no ICMP port-unreachable muddles the count.
        let (ready_b, ready_a) = (
            tokio::sync::oneshot::channel::<()>(),
            tokio::sync::oneshot::channel::<()>(),
        );
        let recv = |at: SocketAddr, ready: tokio::sync::oneshot::Sender<()>| {
            move |_| async move {
                let socket = UdpSocket::bind(at).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                ready.send(()).unwrap();
                let mut n = 0u32;
                let mut buf = [0u8; 128];
                while socket.recv(&mut buf).is_ok() {
                    n += 1;
                }
                n
            }
        };
        let rb = net.run_in_namespace(b, recv(to_b, ready_b.0));
        let ra = net.run_in_namespace(a, recv(to_a, ready_a.0));
        let senders = async {
            ready_b.1.await.unwrap();
            ready_a.1.await.unwrap();
            let (x, y) = tokio::join!(
                net.run_in_namespace(a, send(to_b)),
                net.run_in_namespace(b, send(to_a))
            );
            x.unwrap();
            y.unwrap();
        };
        let (got_b, got_a, ()) = tokio::join!(rb, ra, senders);
        assert_eq!(
            got_b.unwrap(),
            u32::from(COUNT),
            "the shaped link loses nothing"
        );
        assert_eq!(got_a.unwrap(), 0, "the cut link delivers nothing");
        assert_eq!(net.capture_path(), Some(path.as_path()));
    });
    // The network is gone, and with it the reader (joined before the file is
    // finished): every interface has its statistics.
    let (udp, statistics) = udp_in_capture(&path);
    assert_eq!(statistics, 2, "one statistics block per peer");
    let count = |iface: &str, dir: u32, port: u16| {
        udp.iter()
            .filter(|(i, d, p, _, _)| i == iface && *d == dir && *p == port)
            .count()
    };
    let (inbound, outbound) = (1, 2);
    let n = usize::from(COUNT);
    // 1 -> 2: sent by 1 (before its shaper) and delivered to 2.
    assert_eq!(count("p1", inbound, 7001), n, "{udp:?}");
    assert_eq!(count("p2", outbound, 7001), n);
    // 2 -> 1: sent by 2, cut in its own tree: never delivered to 1.
    assert_eq!(count("p2", inbound, 7002), n);
    assert_eq!(count("p1", outbound, 7002), 0);
    // Nowhere else.
    assert_eq!(udp.len(), 3 * n);
    // Each delivered datagram was recorded after it was sent (kernel timestamps).
    for seq in 0..COUNT {
        let at = |iface: &str, dir: u32| {
            udp.iter()
                .find(|(i, d, p, s, _)| i == iface && *d == dir && *p == 7001 && *s == seq)
                .map(|e| e.4)
                .unwrap()
        };
        assert!(at("p2", outbound) >= at("p1", inbound), "datagram {seq}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
