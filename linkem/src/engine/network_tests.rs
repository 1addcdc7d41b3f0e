//! The engine behind a real [`Network`] (the userspace backend): its capture, read back
//! from the file, and a network of 100 peers.

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::backend::{BackendKind, LinkStats};
use crate::capture::CaptureConfig;
use crate::ip::Subnet;
use crate::network::{Link, Network, PeerId};
use crate::tc::impairment::LinkImpairment;

const LATENCY: Duration = Duration::from_millis(5);
const DATAGRAMS: usize = 400;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A capture file in the system's temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(what: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "linkem-engine-{what}-{}.pcapng",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One interface's records, as read back from the file.
#[derive(Debug, Default)]
struct Recorded {
    description: String,
    /// The comment of every packet that has one.
    comments: Vec<String>,
    /// Packets without a comment (control traffic).
    plain: u64,
}

/// Every interface of a capture by name.
fn read_capture(path: &Path) -> HashMap<String, Recorded> {
    let mut reader = PcapNgReader::new(File::open(path).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut out: HashMap<String, Recorded> = HashMap::new();
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            Block::InterfaceDescription(idb) => {
                let mut name = String::new();
                let mut description = String::new();
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                        InterfaceDescriptionOption::IfDescription(d) => description = d.to_string(),
                        _ => {}
                    }
                }
                out.entry(name.clone()).or_default().description = description;
                names.push(name);
            }
            Block::EnhancedPacket(epb) => {
                let iface = out
                    .get_mut(&names[epb.interface_id as usize])
                    .expect("a packet on a described interface");
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                match comment {
                    Some(c) => iface.comments.push(c),
                    None => iface.plain += 1,
                }
            }
            _ => {}
        }
    }
    out
}

/// Sends `count` numbered datagrams from `from` to port 9 (discard) of `to`, paced so
/// that no queue fills.
async fn send_datagrams(net: &Network, from: PeerId, to: PeerId, count: usize) {
    let dest = SocketAddr::new(net.addr(to).unwrap(), 9);
    net.run_in_namespace(from, move |_| async move {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        for k in 0..count as u32 {
            socket.send_to(&k.to_be_bytes(), dest).unwrap();
            if k % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .await
    .unwrap();
}

/// Sends `len` bytes over one TCP connection from `from` to `to`.
async fn tcp_transfer(net: &Network, from: PeerId, to: PeerId, len: usize) {
    let addr = SocketAddr::new(net.addr(to).unwrap(), 5001);
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let server = net.run_in_namespace(to, move |_| async move {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut got).unwrap();
        got.len()
    });
    let client = async {
        ready.await.unwrap();
        net.run_in_namespace(from, move |_| async move {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut s, &vec![0x5a; len]).unwrap();
        })
        .await
        .unwrap();
    };
    let (got, ()) = tokio::join!(server, client);
    assert_eq!(got.unwrap(), len);
}

/// Every link's counters once the test's traffic is over: nothing queued, and
/// nothing changed over 100 ms (a TCP connection's last segments may still be on
/// their way when its ends have returned).
async fn settled_stats(net: &Network, links: &[Link]) -> HashMap<Link, LinkStats> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = HashMap::new();
    loop {
        let mut all = HashMap::new();
        for &link in links {
            all.insert(link, net.link_stats(link).await.unwrap().unwrap());
        }
        let data = |m: &HashMap<Link, LinkStats>| {
            m.iter()
                .map(|(l, s)| (*l, s.fates.map(|f| (f.sent_packets, f.duplicated)), s.qlen))
                .collect::<Vec<_>>()
        };
        let (mut now, mut before) = (data(&all), data(&last));
        now.sort_by_key(|e| (e.0.source, e.0.destination));
        before.sort_by_key(|e| (e.0.source, e.0.destination));
        if (now == before && all.values().all(|s| s.qlen == 0)) || Instant::now() > deadline {
            return all;
        }
        last = all;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Builds a 3-peer network with a capture: 1 -> 2 lossy, delayed, duplicating and
/// corrupting, 1 -> 3 losing everything; sends datagrams over both; returns every
/// link's counters (read just before the network drops) and the capture read back.
fn captured_run(file: &TempFile) -> (HashMap<Link, LinkStats>, HashMap<String, Recorded>) {
    let rt = runtime();
    let stats = rt.block_on(async {
        let mut net = Network::builder(Subnet::new([10, 98, 0, 0].into(), 24))
            .backend(BackendKind::Userspace)
            .capture(CaptureConfig::new(&file.0))
            .seed(11)
            .build()
            .await
            .unwrap();
        assert_eq!(net.capture_path(), Some(file.0.as_path()));
        let (p1, p2, p3) = (
            net.add_peer().await.unwrap(),
            net.add_peer().await.unwrap(),
            net.add_peer().await.unwrap(),
        );
        let lossy = LinkImpairment::new()
            .with_latency(LATENCY)
            .with_loss(20.0)
            .with_duplicate(10.0)
            .with_corrupt(5.0);
        net.apply_impairment(Link::new(p1, p2), lossy)
            .await
            .unwrap();
        net.apply_impairment(Link::new(p1, p3), LinkImpairment::new().with_loss(100.0))
            .await
            .unwrap();
        send_datagrams(&net, p1, p2, DATAGRAMS).await;
        send_datagrams(&net, p1, p3, DATAGRAMS).await;
        // TCP through a delay-only link: super-packets cross it whole and are recorded
        // as the wire packets they stand for.
        net.apply_impairment(
            Link::new(p2, p3),
            LinkImpairment::new().with_latency(Duration::from_millis(1)),
        )
        .await
        .unwrap();
        tcp_transfer(&net, p2, p3, 4 << 20).await;
        let links: Vec<Link> = [(p1, p2), (p2, p1), (p1, p3), (p3, p1), (p2, p3), (p3, p2)]
            .into_iter()
            .map(|(a, b)| Link::new(a, b))
            .collect();
        let stats = settled_stats(&net, &links).await;
        drop(net);
        stats
    });
    (stats, read_capture(&file.0))
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN): run with --ignored"]
fn the_capture_records_every_wire_packet_of_every_link_with_its_fate() {
    let file = TempFile::new("capture");
    let (stats, capture) = captured_run(&file);
    for (link, s) in &stats {
        let fates = s.fates.expect("the userspace backend counts fates");
        let name = format!("{}->{}", link.source, link.destination);
        let empty = Recorded::default();
        let rec = capture.get(&name).unwrap_or(&empty);
        // One annotated record per wire packet that entered, and per duplicate.
        assert_eq!(
            rec.comments.len() as u64,
            fates.sent_packets + fates.duplicated,
            "link {name}: {s}"
        );
        // Control frames the kernel sends by itself have no comment; the counters were
        // read before the network dropped, so a late one may only add to the capture.
        assert!(rec.plain >= fates.control_packets, "link {name}: {s}");
        if capture.contains_key(&name) {
            assert_eq!(
                rec.description,
                format!("peer {} to peer {}", link.source, link.destination)
            );
        }
        let count = |prefix: &str| {
            rec.comments
                .iter()
                .filter(|c| c.starts_with(prefix))
                .count() as u64
        };
        assert_eq!(count("dropped: loss"), fates.dropped_loss, "link {name}");
        assert_eq!(count("dropped: partition"), fates.dropped_partition);
        let tagged = |tag: &str| rec.comments.iter().filter(|c| c.contains(tag)).count() as u64;
        assert_eq!(tagged("duplicate"), fates.duplicated, "link {name}");
        assert_eq!(tagged("flipped"), fates.corrupted, "link {name}");
    }

    // 1 -> 3 lost everything, and the capture says so for every datagram.
    let all_lost = &capture["1->3"];
    assert_eq!(all_lost.comments.len(), DATAGRAMS);
    assert!(
        all_lost.comments.iter().all(|c| c == "dropped: loss"),
        "{:?}",
        all_lost.comments
    );

    // 1 -> 2: every delivered copy was given exactly the configured latency (no
    // jitter, no rate), and every fate the link configured happened.
    let lossy = &capture["1->2"];
    let delivered: Vec<&String> = lossy
        .comments
        .iter()
        .filter(|c| c.starts_with("delivered"))
        .collect();
    assert!(!delivered.is_empty());
    assert!(
        delivered
            .iter()
            .all(|c| c.starts_with("delivered after 5.000 ms")),
        "{delivered:?}"
    );
    let fates = stats[&Link::new(PeerId(1), PeerId(2))].fates.unwrap();
    assert!(fates.dropped_loss > 0 && fates.duplicated > 0 && fates.corrupted > 0);

    // 2 -> 3 carried at least the 4 MB in wire packets of at most 1448 payload bytes.
    let tcp = &capture["2->3"];
    assert!(
        tcp.comments.len() >= (4 << 20) / 1448,
        "{}",
        tcp.comments.len()
    );
    assert!(tcp
        .comments
        .iter()
        .all(|c| c.starts_with("delivered after 1.000 ms")));
}

#[test]
#[ignore = "needs tshark and root: run with --ignored where tshark is installed"]
fn tshark_reads_the_capture_names_and_comments() {
    let tshark = ["/usr/bin/tshark", "/usr/local/bin/tshark"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("tshark is installed");
    let file = TempFile::new("tshark");
    let (stats, _) = captured_run(&file);
    let out = std::process::Command::new(tshark)
        .args(["-r"])
        .arg(&file.0)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut per_link: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in text.lines() {
        let (name, comment) = line.split_once('\t').unwrap_or((line, ""));
        per_link.entry(name).or_default().push(comment);
    }
    let lost = &per_link["1->3"];
    let annotated: Vec<&&str> = lost.iter().filter(|c| !c.is_empty()).collect();
    assert_eq!(annotated.len(), DATAGRAMS);
    assert!(annotated.iter().all(|c| **c == "dropped: loss"));
    let fates = stats[&Link::new(PeerId(1), PeerId(2))].fates.unwrap();
    let lossy = &per_link["1->2"];
    assert_eq!(
        lossy.iter().filter(|c| !c.is_empty()).count() as u64,
        fates.sent_packets + fates.duplicated
    );
    assert!(lossy
        .iter()
        .any(|c| c.starts_with("delivered after 5.000 ms")));
}

#[test]
#[ignore = "needs root (CAP_NET_ADMIN): run with --ignored"]
fn a_hundred_peers_with_every_link_impaired_work() {
    const PEERS: usize = 100;
    const DELAY: Duration = Duration::from_millis(1);
    let rt = runtime();
    // Build a network of `n` peers and impair all its links: the network, the time to
    // build it and the time to impair it.
    async fn build(n: usize) -> (Network, Vec<PeerId>, Duration, Duration) {
        let start = Instant::now();
        let mut net = Network::builder(Subnet::new([10, 97, 0, 0].into(), 24))
            .backend(BackendKind::Userspace)
            .build()
            .await
            .unwrap();
        let mut peers = Vec::new();
        for _ in 0..n {
            peers.push(net.add_peer().await.unwrap());
        }
        let built = start.elapsed();
        net.apply_impairment_all(LinkImpairment::new().with_latency(DELAY))
            .await
            .unwrap();
        (net, peers, built, start.elapsed() - built)
    }
    rt.block_on(async {
        // The baseline, in this run: 2 peers, 2 links. Its per-peer and per-link times
        // include the network's fixed costs, so they bound the per-item cost from above.
        let (small, _, built2, impaired2) = build(2).await;
        drop(small);
        let (net, peers, built, impaired) = build(PEERS).await;
        // Setup grows with the peers and links, not faster: per peer and per link at most
        // 10 times the small network's (a loaded machine gets that much slack).
        assert!(
            built / PEERS as u32 <= built2 / 2 * 10,
            "100 peers took {built:?} to build, 2 peers {built2:?}"
        );
        assert!(
            impaired / (PEERS * (PEERS - 1)) as u32 <= impaired2 / 2 * 10,
            "9,900 links took {impaired:?} to impair, 2 links {impaired2:?}"
        );
        // Every one of the 9,900 links carries the impairment.
        let (first, last) = (peers[0], peers[PEERS - 1]);
        assert_eq!(
            net.impairment(Link::new(last, first)).await.unwrap(),
            LinkImpairment::new().with_latency(DELAY)
        );
        // One pair at the far ends: a UDP echo round trip crosses two 1 ms links.
        let to = SocketAddr::new(net.addr(last).unwrap(), 7);
        let echo = net.run_in_namespace(last, move |_| async move {
            let s = UdpSocket::bind(to).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..20 {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    break;
                };
                s.send_to(&buf[..n], from).unwrap();
            }
        });
        let probe = net.run_in_namespace(first, move |_| async move {
            let s = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
            s.connect(to).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut rtts = Vec::new();
            let mut buf = [0u8; 64];
            for k in 0..20u32 {
                let t = Instant::now();
                s.send(&k.to_be_bytes()).unwrap();
                while let Ok(n) = s.recv(&mut buf) {
                    if buf[..n] == k.to_be_bytes() {
                        rtts.push(t.elapsed());
                        break;
                    }
                }
            }
            rtts
        });
        let (_, rtts) = tokio::join!(echo, probe);
        let mut rtts = rtts.unwrap();
        // Neighbour resolution may cost the first probe; the rest come back.
        assert!(rtts.len() >= 19, "{} of 20 echoes came back", rtts.len());
        rtts.sort();
        let median = rtts[rtts.len() / 2];
        // Physics: two links of 1 ms each; the engine adds microseconds, a loaded
        // machine some milliseconds at worst.
        assert!(median >= 2 * DELAY, "median {median:?}");
        assert!(
            median < 2 * DELAY + Duration::from_millis(20),
            "median {median:?}"
        );
        let stats = net
            .link_stats(Link::new(first, last))
            .await
            .unwrap()
            .unwrap();
        assert!(stats.packets >= 19, "{stats}");
        drop(net);
    });
}
