// A test without arguments builds its own networks; it may return a Result.
#[linkem::test(timeout = "5s", parallel, netem)]
async fn builds_its_own() -> Result<(), linkem::Error> {
    Ok(())
}

#[linkem::test]
async fn plain() {}

fn main() {}
