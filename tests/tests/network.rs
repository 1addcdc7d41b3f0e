//! The core network: reachability, isolation, errors and teardown, on a real kernel.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use linkem::ip::Subnet;
use linkem::network::{Network, PeerId};
use linkem::Error;
use linkem_tests::{
    eventually, fd_count, interfaces, live_netns_inodes, own_netns_inodes, thread_names,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use linkem_tests::network_in as network;

linkem_test::main!();

fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Subnet {
    Subnet::new(Ipv4Addr::new(a, b, c, d).into(), len)
}

/// Connects until the listener is up (it starts on another thread).
async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    for _ in 0..500 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("could not connect to {addr}");
}

async fn tcp_echo_between(net: &Network, server: PeerId, client: PeerId) -> Result<(), Error> {
    let server_addr = SocketAddr::new(net.addr(server)?, 7100);
    let serve = net.run_in_namespace(server, move |_| async move {
        let listener = tokio::net::TcpListener::bind(server_addr).await.unwrap();
        let (mut stream, from) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(&buf).await.unwrap();
        from.ip()
    });
    let call = net.run_in_namespace(client, move |_| async move {
        let mut stream = connect(server_addr).await;
        stream.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    });
    let (seen_from, echoed) = tokio::join!(serve, call);
    assert_eq!(
        seen_from?,
        net.addr(client)?,
        "the server sees the client's address"
    );
    assert_eq!(&echoed?, b"hello");
    Ok(())
}

#[linkem::test]
async fn peers_talk_tcp_by_address() -> Result<(), Error> {
    let net = network(v4(10, 0, 0, 0, 24), 3).await?;
    assert_eq!(net.addr(PeerId(1))?, IpAddr::from([10, 0, 0, 1]));
    assert_eq!(net.addr(PeerId(3))?, IpAddr::from([10, 0, 0, 3]));
    tcp_echo_between(&net, PeerId(2), PeerId(1)).await?;
    tcp_echo_between(&net, PeerId(3), PeerId(2)).await
}

#[linkem::test]
async fn peers_talk_tcp_over_ipv6() -> Result<(), Error> {
    let net = network(Subnet::new("fd00:1::".parse().unwrap(), 64), 2).await?;
    assert_eq!(net.addr(PeerId(2))?, "fd00:1::2".parse::<IpAddr>().unwrap());
    tcp_echo_between(&net, PeerId(1), PeerId(2)).await
}

#[linkem::test]
async fn peers_talk_udp_by_address() -> Result<(), Error> {
    let net = network(v4(10, 0, 0, 0, 24), 2).await?;
    let to = SocketAddr::new(net.addr(PeerId(2))?, 7200);
    let receive = net.run_in_namespace(PeerId(2), move |_| async move {
        let socket = tokio::net::UdpSocket::bind(to).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        (buf[..n].to_vec(), from.ip())
    });
    let send = net.run_in_namespace(PeerId(1), move |_| async move {
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        // Datagrams sent before the receiver binds are lost: repeat until it answers
        // by finishing (the receiver's future completing ends this one below).
        for _ in 0..200 {
            socket.send_to(b"datagram", to).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::pin!(send);
    let (payload, from) = tokio::select! {
        got = receive => got?,
        _ = &mut send => panic!("the receiver got nothing in 2 s"),
    };
    assert_eq!(payload, b"datagram");
    assert_eq!(from, net.addr(PeerId(1))?);
    Ok(())
}

#[linkem::test]
async fn a_peer_sees_only_its_own_interfaces_and_cannot_reach_the_host() -> Result<(), Error> {
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_listener.local_addr().unwrap().port();
    let net = network(v4(10, 0, 0, 0, 24), 1).await?;
    let (ifaces, to_host_lo, off_subnet) = net
        .run_in_namespace(PeerId(1), move |_| async move {
            let ifaces = interfaces();
            let lo = tokio::net::TcpStream::connect(("127.0.0.1", host_port)).await;
            let off = tokio::net::TcpStream::connect(("198.51.100.1", 80)).await;
            (
                ifaces,
                lo.map(drop).map_err(|e| e.kind()),
                off.map(drop).map_err(|e| e.raw_os_error()),
            )
        })
        .await?;
    assert_eq!(ifaces, ["eth0".to_string(), "lo".to_string()].into());
    assert_eq!(
        to_host_lo,
        Err(std::io::ErrorKind::ConnectionRefused),
        "the peer's 127.0.0.1 is its own loopback, not the host's"
    );
    assert_eq!(
        off_subnet,
        Err(Some(libc_enetunreach())),
        "no route leaves the subnet"
    );
    Ok(())
}

fn libc_enetunreach() -> i32 {
    101
}

#[linkem::test]
async fn two_networks_with_one_subnet_do_not_see_each_other() -> Result<(), Error> {
    let a = network(v4(10, 9, 0, 0, 24), 2).await?;
    let b = network(v4(10, 9, 0, 0, 24), 2).await?;
    let to = SocketAddr::new(a.addr(PeerId(2))?, 7300);
    assert_eq!(
        to.ip(),
        b.addr(PeerId(2))?,
        "same addresses in both networks"
    );
    let listen = |tag: &'static [u8]| {
        move |_| async move {
            let socket = tokio::net::UdpSocket::bind(to).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await
            {
                got.push(buf[..n].to_vec());
            }
            assert!(got.iter().all(|m| m == tag), "foreign datagrams: {got:?}");
            got.len()
        }
    };
    let send = |tag: &'static [u8]| {
        move |_| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
            for _ in 0..20 {
                socket.send_to(tag, to).await.unwrap();
            }
        }
    };
    let (got_a, got_b, sent_a, sent_b) = tokio::join!(
        a.run_in_namespace(PeerId(2), listen(b"from-a")),
        b.run_in_namespace(PeerId(2), listen(b"from-b")),
        a.run_in_namespace(PeerId(1), send(b"from-a")),
        b.run_in_namespace(PeerId(1), send(b"from-b")),
    );
    sent_a?;
    sent_b?;
    assert_eq!(got_a?, 20, "network a delivers its own datagrams");
    assert_eq!(got_b?, 20, "network b delivers its own datagrams");
    Ok(())
}

#[linkem::test]
async fn a_program_runs_inside_a_peer() -> Result<(), Error> {
    let net = network(v4(10, 0, 0, 0, 24), 2).await?;
    let out = net
        .command(PeerId(2), "cat")?
        .arg("/proc/self/net/fib_trie")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10.0.0.2"),
        "the child sees the peer's address:\n{text}"
    );
    assert!(!text.contains("10.0.0.1\n"), "and not another peer's");
    Ok(())
}

#[linkem::test]
async fn nothing_remains_after_drop() -> Result<(), Error> {
    // Threads are compared by identity, not by number: a thread of the harness may
    // end while this test runs (nextest saw 3 before and 2 after).
    let threads_before: BTreeSet<String> = thread_names().into_iter().collect();
    let new_threads = || -> Vec<String> {
        thread_names()
            .into_iter()
            .filter(|t| !threads_before.contains(t))
            .collect()
    };
    let fds_before = fd_count();
    let host_ifaces = interfaces();
    let net = network(v4(10, 0, 0, 0, 24), 3).await?;
    tcp_echo_between(&net, PeerId(1), PeerId(2)).await?;
    let ours = net.namespace_inodes();
    assert_eq!(ours.len(), 4, "hub and three peers");
    let live = live_netns_inodes();
    assert!(
        ours.iter().all(|i| live.contains(i)),
        "visible from outside while alive"
    );
    assert!(
        !new_threads().is_empty(),
        "the network runs a driver thread"
    );
    drop(net);
    let live = live_netns_inodes();
    let left: Vec<_> = ours.iter().filter(|i| live.contains(i)).collect();
    assert!(
        left.is_empty(),
        "namespaces still referenced after drop: {left:?}"
    );
    assert!(
        eventually(|| new_threads().is_empty()).await,
        "threads left after drop: {:#?}",
        new_threads()
    );
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
    assert_eq!(interfaces(), host_ifaces, "the host's interfaces changed");
    Ok(())
}

#[linkem::test]
async fn explicit_shutdown_and_drop_outside_any_runtime() -> Result<(), Error> {
    let net = network(v4(10, 0, 0, 0, 24), 2).await?;
    let ours = net.namespace_inodes();
    net.shutdown().await?;
    assert!(ours.iter().all(|i| !live_netns_inodes().contains(i)));

    // Built on a multi-thread runtime, dropped after that runtime is gone.
    let (net, ours) = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let net = rt.block_on(network(v4(10, 0, 0, 0, 24), 2)).unwrap();
        let ours = net.namespace_inodes();
        (net, ours)
    })
    .join()
    .unwrap();
    std::thread::spawn(move || drop(net)).join().unwrap();
    assert!(ours.iter().all(|i| !live_netns_inodes().contains(i)));
    Ok(())
}

#[linkem::test]
async fn a_panicking_peer_is_named_and_the_network_survives() -> Result<(), Error> {
    let net = network(v4(10, 0, 0, 0, 24), 2).await?;
    let err = net
        .run_in_namespace(PeerId(2), |_| async { panic!("boom in the peer") })
        .await
        .unwrap_err();
    match err {
        Error::PeerPanicked { peer, message } => {
            assert_eq!(peer, PeerId(2));
            assert!(message.contains("boom in the peer"), "{message}");
        }
        other => panic!("expected PeerPanicked, got {other:?}"),
    }
    tcp_echo_between(&net, PeerId(1), PeerId(2)).await
}

#[linkem::test]
async fn bad_and_exhausted_subnets_are_refused() -> Result<(), Error> {
    let before = own_netns_inodes();
    for bad in [
        v4(10, 0, 0, 1, 24),
        v4(10, 0, 0, 0, 31),
        v4(127, 0, 0, 0, 8),
    ] {
        match Network::new(bad).await {
            Err(Error::InvalidSubnet { .. }) => {}
            other => panic!("{bad}: expected InvalidSubnet, got {other:?}"),
        }
    }
    assert!(
        own_netns_inodes() == before,
        "a refused subnet must not create a namespace"
    );
    let mut net = network(v4(10, 0, 0, 0, 30), 2).await?;
    match net.add_peer().await {
        Err(Error::SubnetExhausted {
            capacity: 2,
            peer: PeerId(3),
            ..
        }) => {}
        other => panic!("expected SubnetExhausted, got {other:?}"),
    }
    assert_eq!(net.peer_count(), 2);
    tcp_echo_between(&net, PeerId(1), PeerId(2)).await
}

#[linkem::test]
async fn unknown_peers_are_refused() -> Result<(), Error> {
    let net = network(v4(10, 0, 0, 0, 24), 1).await?;
    assert!(matches!(
        net.addr(PeerId(2)),
        Err(Error::UnknownPeer(PeerId(2)))
    ));
    assert!(matches!(
        net.addr(PeerId(0)),
        Err(Error::UnknownPeer(PeerId(0)))
    ));
    let r = net.run_in_namespace(PeerId(5), |_| async {}).await;
    assert!(matches!(r, Err(Error::UnknownPeer(PeerId(5)))));
    Ok(())
}

#[linkem::test]
async fn nothing_remains_after_sigkill() -> Result<(), Error> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hold-network"))
        .arg("3")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hold-network");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the child's inodes");
    let inodes: Vec<u64> = line
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(inodes.len(), 4, "hub and three peers: {line:?}");
    let live = live_netns_inodes();
    assert!(
        inodes.iter().all(|i| live.contains(i)),
        "the child's namespaces are alive"
    );
    child.kill().expect("SIGKILL the child"); // Child::kill sends SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed");
    let live = live_netns_inodes();
    let left: Vec<_> = inodes.iter().filter(|i| live.contains(i)).collect();
    assert!(left.is_empty(), "namespaces survived SIGKILL: {left:?}");
    Ok(())
}
