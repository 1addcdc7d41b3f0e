//! The seed's Quick Example compiles (as a binary of this crate), runs, and measures
//! from inside its peers what it configured (see tests/src/bin/quick-example.rs).

linkem_test::main!();

#[linkem::test]
async fn the_quick_example_runs_and_measures_its_link() -> Result<(), linkem::Error> {
    // The binary builds its network with `Network::new` (auto): the backend this
    // trial's networks resolve to is handed to it through the run-wide variable.
    let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
    let backend = linkem::network::Network::new(subnet).await?.backend();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quick-example"))
        .env(linkem::network::BACKEND_ENV, backend.to_string())
        .output()
        .expect("run the quick example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The binary prints its error as a sentence (Error's Debug is its Display).
    if !out.status.success() && stderr.contains("sch_netem is missing") {
        return Err(linkem::Error::Unsupported {
            feature: "the quick example's 100 ms latency and 1% loss on the kernel backend".into(),
            module: "sch_netem",
            hint: "the userspace backend runs it; the kernel lane runs it on the kernel backend",
        });
    }
    assert!(
        out.status.success(),
        "the quick example failed: {stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}
