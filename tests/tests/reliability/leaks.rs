//! No leaks on any way out: panics, timeouts, half-built networks, IFB devices.

use super::*;

#[linkem::test]
async fn a_panicking_peer_leaves_nothing() -> Result<(), Error> {
    let before = Before::now();
    let net = network(2).await?;
    let ours = net.namespace_inodes();
    let dst = SocketAddr::new(net.addr(P2)?, 7801);
    let err = net
        .run_in_namespace(P2, move |_| async move {
            // A socket and a spawned task are alive when the body panics.
            let _socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
            tokio::spawn(std::future::pending::<()>());
            panic!("the peer gives up");
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PeerPanicked { peer: P2, message } if message.contains("gives up")),
        "{err:?}"
    );
    assert_usable(&net).await?;
    drop(net);
    before.assert_back(&ours, "after a peer panicked");
    Ok(())
}

#[linkem::test]
async fn a_timed_out_peer_is_cancelled_and_leaves_nothing() -> Result<(), Error> {
    let before = Before::now();
    let net = network(2).await?;
    let ours = net.namespace_inodes();
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    /// Sets its flag when the peer's body is dropped (cancelled).
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (s, d) = (started.clone(), dropped.clone());
    let dst = SocketAddr::new(net.addr(P1)?, 7802);
    let run = net.run_in_namespace(P1, move |_| async move {
        let _guard = OnDrop(d);
        let _socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        s.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let timed_out = tokio::time::timeout(Duration::from_millis(300), run).await;
    assert!(timed_out.is_err(), "the body sleeps for an hour");
    assert!(started.load(Ordering::SeqCst), "the body had started");
    assert!(
        eventually(|| dropped.load(Ordering::SeqCst)).await,
        "dropping the run's future cancels the peer's body"
    );
    // The cancellation reaches the peer's thread asynchronously (the future that was
    // dropped does not wait for it), so this one is awaited.
    assert!(
        eventually(|| !thread_names().iter().any(|t| t.contains(" linkem-peer1 "))).await,
        "the peer's thread ends with its body: {:#?}",
        thread_names()
    );
    // The socket of the cancelled body is closed: the port can be bound again.
    let rebound = net
        .run_in_namespace(P1, move |_| async move {
            tokio::net::UdpSocket::bind(dst).await.map(drop).is_ok()
        })
        .await?;
    assert!(rebound, "the cancelled body's socket is closed");
    assert_usable(&net).await?;
    drop(net);
    before.assert_back(&ours, "after a timed-out peer");
    Ok(())
}

#[linkem::test]
async fn a_panic_while_building_leaves_nothing() -> Result<(), Error> {
    let before = Before::now();

    // On a thread of its own with its own runtime: two peers added, a third add_peer
    // cancelled halfway (its namespace exists, its veth may not), then a panic.
    let (inodes_tx, inodes_rx) = std::sync::mpsc::channel();
    // The thread's panic is expected: into the test's capture with it (shown only if
    // the test fails), so a green run stays quiet.
    let capture = linkem::testing::capture::Capture::current();
    let outcome = std::thread::spawn(move || {
        let _capture = capture.as_ref().map(|c| c.enter());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut net = network(2).await.unwrap();
            inodes_tx.send(net.namespace_inodes()).unwrap();
            // Polled once: the namespace is created synchronously, then it awaits the
            // kernel's answer and is dropped.
            poll_once_and_cancel(net.add_peer());
            panic!("construction fails halfway");
        })
    })
    .join();
    assert!(outcome.is_err(), "the builder thread panicked");
    let ours = inodes_rx.recv().unwrap();
    assert_eq!(ours.len(), 3);
    before.assert_back(&ours, "after a panic in a building thread");

    // In a task of the test's runtime: the panic unwinds through a half-built network.
    let (inodes_tx, inodes_rx) = std::sync::mpsc::channel();
    let task = tokio::spawn(async move {
        let mut net = Network::new(subnet()).await.unwrap();
        net.add_peer().await.unwrap();
        inodes_tx.send(net.namespace_inodes()).unwrap();
        poll_once_and_cancel(net.add_peer());
        net.add_peer().await.unwrap();
        panic!("construction fails in a task");
    })
    .await;
    assert!(task.unwrap_err().is_panic());
    let ours = inodes_rx.recv().unwrap();
    before.assert_back(&ours, "after a panic in a building task");
    Ok(())
}

#[linkem::test]
async fn a_cancelled_add_peer_leaves_the_network_usable_and_nothing_behind() -> Result<(), Error> {
    let before = Before::now();
    let mut net = network(1).await?;
    let mut finished = 0;
    for _ in 0..5 {
        finished += usize::from(poll_once_and_cancel(net.add_peer()));
    }
    assert!(
        finished < 5,
        "no add_peer was cancelled halfway; the test proves nothing"
    );
    assert_eq!(net.peer_count(), 1 + finished);
    // The next peer still gets the next id and a working link (this failed with EEXIST:
    // the cancelled call's hub port was still there).
    assert_eq!(net.add_peer().await?, PeerId(2 + finished));
    assert_usable(&net).await?;
    let ours = net.namespace_inodes();
    drop(net);
    before.assert_back(&ours, "after cancelled add_peer calls");
    Ok(())
}

#[linkem::test(netem, backend = "kernel")]
async fn the_ifb_of_a_duplicating_link_leaves_nothing() -> Result<(), Error> {
    let before = Before::now();
    let net = network(3).await?;
    let ours = net.namespace_inodes();
    net.apply_impairment(
        Link::new(P1, P2),
        LinkImpairment::new().with_duplicate(10.0),
    )
    .await?;
    net.apply_impairment(
        Link::new(P1, P3),
        LinkImpairment::new().with_duplicate(10.0),
    )
    .await?;
    let in_source = net.run_in_namespace(P1, |_| async { interfaces() }).await?;
    assert!(
        in_source.contains("ifb2") && in_source.contains("ifb3"),
        "each duplicating link has its IFB in the source's namespace: {in_source:?}"
    );
    assert_eq!(
        interfaces(),
        before.host_ifaces,
        "no IFB in the host namespace"
    );
    let got = udp_exchange(&net, P1, P2, b"dup", 50).await?;
    assert!(
        got.arrived.len() >= 50,
        "duplication delivers at least every datagram"
    );
    drop(net);
    before.assert_back(&ours, "after IFB devices");
    Ok(())
}
