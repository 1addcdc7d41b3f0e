//! Builds a network on 10.0.0.0/24, sends a payload unique to this process from peer 1
//! to peer 2, checks that exactly that payload arrived, drops the network and checks
//! its namespaces are gone. Prints `inodes <hub> <peer1> <peer2>`, then `OK`. The
//! reliability suite runs several copies at once.

use std::net::SocketAddr;
use std::time::Duration;

use linkem::ip::Subnet;
use linkem::network::{Network, PeerId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), linkem::Error> {
    let mut network = Network::new(Subnet::new([10, 0, 0, 0].into(), 24)).await?;
    network.add_peer().await?;
    network.add_peer().await?;
    let inodes = network.namespace_inodes();
    let line: Vec<String> = inodes.iter().map(u64::to_string).collect();
    println!("inodes {}", line.join(" "));

    let tag = format!("process-{}", std::process::id()).into_bytes();
    let dst = SocketAddr::new(network.addr(PeerId(2))?, 7900);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let receive = network.run_in_namespace(PeerId(2), move |_| async move {
        let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
            if got.len() == 20 {
                break;
            }
        }
        got
    });
    let sent = tag.clone();
    let send = network.run_in_namespace(PeerId(1), move |_| async move {
        ready_rx.await.unwrap();
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        for _ in 0..20 {
            socket.send_to(&sent, dst).await.unwrap();
        }
    });
    let (got, sent) = tokio::join!(receive, send);
    sent?;
    let got = got?;
    assert_eq!(got.len(), 20, "20 datagrams sent, {} arrived", got.len());
    assert!(
        got.iter().all(|m| *m == tag),
        "a datagram of another network arrived: {got:?}"
    );
    drop(network);
    let live = linkem_tests::own_netns_inodes();
    assert!(
        inodes.iter().all(|i| !live.contains(i)),
        "namespaces left after drop"
    );
    println!("OK");
    Ok(())
}
