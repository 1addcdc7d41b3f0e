//! Builds a network, prints its namespace inodes on one line, then waits to be killed.
//! The leak tests SIGKILL it and check from outside that nothing of it remains.

use linkem::ip::Subnet;
use linkem::network::Network;
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), linkem::Error> {
    let peers: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let mut network = Network::new(Subnet::new([10, 0, 0, 0].into(), 24)).await?;
    for _ in 0..peers {
        network.add_peer().await?;
    }
    let inodes: Vec<String> = network
        .namespace_inodes()
        .iter()
        .map(u64::to_string)
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", inodes.join(" ")).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}
