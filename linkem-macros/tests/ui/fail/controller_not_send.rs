// The controller runs on the harness's runtime, which may move it between threads.
#[linkem::test(peers = 2)]
async fn holds_an_rc(_controller: linkem::Controller) {
    let shared = std::rc::Rc::new(1);
    std::future::ready(()).await;
    let _ = shared;
}

fn main() {}
