//! Builds a seeded network with the builder's seed 1 on the backend named by its first
//! argument, sends the determinism tests' datagrams (`linkem_tests::fates`), and prints
//! the network's seed and the fates. The determinism tests run it with `LINKEM_SEED`
//! set, to show that the variable wins over the builder.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend: linkem::network::BackendKind =
        std::env::args().nth(1).unwrap_or_default().parse()?;
    let net = linkem_tests::fates::seeded_network(backend, 1).await?;
    let fates = linkem_tests::fates::run(&net, false).await?;
    println!("seed {}", net.seed());
    print!("{fates}");
    Ok(())
}
