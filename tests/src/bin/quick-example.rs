//! The seed document's Quick Example, as written. The integration suite runs it
//! (tests/tests/quick_example.rs); it needs sch_netem, so it runs in the kernel lane.

use linkem::{
    ip::Subnet,
    network::{Link, Network},
    tc::impairment::LinkImpairment,
};
use std::net::Ipv4Addr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let subnet = Subnet::new(Ipv4Addr::new(10, 0, 0, 0).into(), 24);
    let mut network = Network::new(subnet).await?;

    let peer_1 = network.add_peer().await?;
    let peer_2 = network.add_peer().await?;

    // Simulate a slow, lossy link
    network
        .apply_impairment(
            Link::new(peer_1, peer_2),
            LinkImpairment {
                latency: 100_000,             // 100ms
                loss: 1.0,                    // 1% packet loss
                bandwidth_mbit_s: Some(10.0), // 10 Mbit/s
                ..Default::default()
            },
        )
        .await?;

    // Run code in peer's network namespace
    network
        .run_in_namespace(peer_1, |_ctx| {
            Box::pin(async move {
                // Network operations here see the configured impairments
            })
        })
        .await?;

    Ok(())
}
