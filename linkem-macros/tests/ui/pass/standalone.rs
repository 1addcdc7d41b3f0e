// A test without arguments builds its own networks; it may return a Result.
#[linkem::test(timeout = "5s", parallel, netem)]
async fn builds_its_own() -> Result<(), linkem::Error> {
    Ok(())
}

#[linkem::test]
async fn plain() {}

// Pinned to one backend, with a seed for the networks it builds on its thread.
#[linkem::test(backend = "kernel", seed = 7)]
async fn pinned_and_seeded() {}
fn main() {
    let def = linkem::testing::TESTS
        .iter()
        .find(|d| d.name == "pinned_and_seeded")
        .unwrap();
    let spec = (def.spec)();
    assert_eq!(spec.backend(), Some(linkem::BackendKind::Kernel));
    assert_eq!(spec.seed(), Some(7));
}
