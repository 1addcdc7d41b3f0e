//! Scale and teardown under load: a hundred peers with every link impaired, and a
//! network dropped while its links still hold packets.

use super::*;

/// 100 peers, 9,900 links, every one delayed by 5 ms through `apply_impairment_all`:
/// every link reports the impairment, and packets on links chosen across the network
/// take at least the 5 ms (a delay is a floor) and arrive intact. Dropping it leaves
/// nothing. How long it took is said only when something fails.
#[linkem::test(timeout = "900s")]
async fn a_hundred_peers_with_every_link_impaired_work_and_leave_nothing() -> Result<(), Error> {
    const PEERS: usize = 100;
    let before = Before::now();
    let started = Instant::now();
    let mut net = Network::new(Subnet::new([10, 0, 0, 0].into(), 24)).await?;
    for _ in 0..PEERS {
        net.add_peer().await?;
    }
    let built = started.elapsed();
    let delay = LinkImpairment::new().with_latency(Duration::from_millis(5));
    net.apply_impairment_all(delay.clone()).await?;
    let impaired = started.elapsed() - built;
    let timing = format!(
        "{} backend: built in {built:.1?}, 9,900 links impaired in {impaired:.1?}",
        net.backend()
    );
    for from in net.peers().collect::<Vec<_>>() {
        for to in net.peers() {
            if from != to {
                assert_eq!(
                    net.impairment(Link::new(from, to)).await?,
                    delay,
                    "{from} -> {to}; {timing}"
                );
            }
        }
    }
    for (i, (from, to)) in [(1, 2), (2, 1), (1, 100), (100, 1), (37, 64), (99, 50)]
        .into_iter()
        .enumerate()
    {
        let (from, to) = (PeerId(from), PeerId(to));
        let got = Probe::new(5, 7700 + i as u16)
            .bursts(1, Duration::from_millis(2))
            .run(&net, from, to)
            .await?;
        assert_eq!(got.arrived.len(), 5, "{from} -> {to}: {timing}");
        assert!(got.all_intact(), "{from} -> {to}: {timing}");
        let fastest = got.delays().into_iter().min().expect("arrivals");
        // A delay is a floor, up to the arrival stamp's clock conversion.
        assert!(
            fastest + linkem_tests::probe::STAMP_TOLERANCE >= Duration::from_millis(5),
            "{from} -> {to} took {fastest:?}, less than its 5 ms; {timing}"
        );
    }
    let ours = net.namespace_inodes();
    drop(net);
    before.assert_back(&ours, &format!("after 100 peers ({timing})"));
    Ok(())
}

/// A network dropped while its links hold packets (30 s of delay, a slow shaper)
/// returns promptly and leaves nothing: queued packets are discarded, not waited for.
#[linkem::test]
async fn dropping_a_network_with_queued_packets_leaves_nothing() -> Result<(), Error> {
    let before = Before::now();
    let net = network(3).await?;
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_latency(Duration::from_secs(30)),
    )
    .await?;
    net.apply_impairment(
        Link::new(P1, P3),
        LinkImpairment::new().with_rate(Rate::kbit(100)),
    )
    .await?;
    // Neighbours first (ARP passes unimpaired), then fill both links.
    udp_exchange(&net, P1, P3, b"warm", 1).await?;
    let (a2, a3) = (net.addr(P2)?, net.addr(P3)?);
    net.run_in_namespace(P1, move |_| async move {
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for _ in 0..50 {
            let _ = socket.send_to(&[7u8; 1000], SocketAddr::new(a2, 9)).await;
            let _ = socket.send_to(&[7u8; 1000], SocketAddr::new(a3, 9)).await;
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut queued = 0;
    for link in [Link::new(P1, P2), Link::new(P1, P3)] {
        queued += net.link_stats(link).await?.map_or(0, |s| s.qlen);
    }
    assert!(
        queued > 0,
        "nothing was queued when the network was dropped"
    );
    let ours = net.namespace_inodes();
    let dropping = Instant::now();
    drop(net);
    let took = dropping.elapsed();
    // Drop waits for nothing queued: a teardown that waited for the queued packets
    // would take the 30 s of delay; 10 s is far beyond any teardown of 3 peers.
    assert!(
        took < Duration::from_secs(10),
        "dropping with {queued} packets queued took {took:?}"
    );
    before.assert_back(&ours, &format!("dropped with {queued} packets queued"));
    Ok(())
}
