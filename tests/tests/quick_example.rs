//! The seed's Quick Example compiles (as a binary of this crate) and runs.

linkem_test::main!();

#[linkem::test(netem)]
async fn the_quick_example_runs() -> Result<(), linkem::Error> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quick-example"))
        .output()
        .expect("run the quick example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("module: \"sch_netem\"") {
        return Err(linkem::Error::Unsupported {
            feature: "the quick example's 100 ms latency and 1% loss".into(),
            module: "sch_netem",
            hint: "the kernel lane (scripts/kernel-lane) runs it",
        });
    }
    assert!(out.status.success(), "the quick example failed: {stderr}");
    Ok(())
}
