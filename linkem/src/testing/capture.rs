//! Panics of a test, kept until its outcome is known: shown when it fails, dropped
//! when it passes, as libtest does with a test's output.
//!
//! libtest captures `print!` output and panic messages through `std::io::set_output_capture`,
//! which is unstable; a stable harness can only do the part that goes through the panic
//! hook. So the harness installs [`install_panic_hook`] once, and each test routes the
//! panics of its threads into its [`Capture`]: the thread that runs the test (with the
//! controller), and every peer thread the harness starts for a body. What is not
//! captured, and appears inline as it happens:
//! * `print!`/`println!`/`eprintln!` and raw writes to file descriptors 1 and 2: stable
//!   Rust has no per-thread redirection, and redirecting the descriptors would take
//!   the whole process's output, the harness's report included;
//! * the output of child processes (`Peer::command`): they inherit the descriptors;
//!   pipe them (`Stdio::piped()`) to keep them;
//! * panics on threads the test starts itself (`std::thread::spawn`, `spawn_blocking`).
//!
//! Under `--nocapture` the harness installs no hook and everything is shown at once.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::panic::PanicHookInfo;
use std::sync::{Arc, Mutex, Once};

thread_local! {
    /// Where a panic on this thread goes, if a test captures it.
    static SINK: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// The panics of one test, as the default hook would have printed them.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<String>>);

impl Capture {
    /// An empty capture.
    pub fn new() -> Self {
        Capture::default()
    }

    /// The capture of the current thread, if a test set one.
    pub fn current() -> Option<Capture> {
        SINK.with(|sink| sink.borrow().clone())
    }

    /// Routes the panics of the current thread into this capture until the guard is
    /// dropped (then the thread's previous capture, if any, is back).
    pub fn enter(&self) -> CaptureGuard {
        let previous = SINK.with(|sink| sink.replace(Some(self.clone())));
        CaptureGuard { previous }
    }

    /// Routes the panics of the current thread into this capture for the rest of the
    /// thread's life: for a thread that exists for one body.
    pub(crate) fn attach(&self) {
        SINK.with(|sink| *sink.borrow_mut() = Some(self.clone()));
    }

    /// What was captured so far, emptying the capture.
    pub fn take(&self) -> String {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, info: &PanicHookInfo<'_>) {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let message = crate::network::panic_message(info.payload());
        let mut text = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match info.location() {
            Some(at) => {
                let _ = writeln!(text, "thread '{name}' panicked at {at}:\n{message}");
            }
            None => {
                let _ = writeln!(text, "thread '{name}' panicked:\n{message}");
            }
        }
        // As the default hook: a backtrace when RUST_BACKTRACE (or RUST_LIB_BACKTRACE)
        // asks for one.
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(text, "stack backtrace:\n{backtrace}");
        }
    }
}

/// Restores the thread's previous capture when dropped.
#[derive(Debug)]
#[must_use = "the capture ends when the guard is dropped"]
pub struct CaptureGuard {
    previous: Option<Capture>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SINK.with(|sink| *sink.borrow_mut() = previous);
    }
}

/// Installs (once per process) a panic hook that sends a panic to the capture of its
/// thread, and to the hook that was there before (the default one prints it) when
/// the thread has none.
pub fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic while the thread's locals are being destroyed.
            match SINK.try_with(|sink| sink.borrow().clone()).ok().flatten() {
                Some(capture) => capture.record(info),
                None => previous(info),
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_panic_is_kept_and_the_guard_ends_the_capture() {
        install_panic_hook();
        let capture = Capture::new();
        {
            let _guard = capture.enter();
            assert!(Capture::current().is_some());
            let caught = std::panic::catch_unwind(|| panic!("expected in this test"));
            assert!(caught.is_err());
        }
        assert!(
            Capture::current().is_none(),
            "the guard restores no capture"
        );
        let text = capture.take();
        assert!(text.contains("panicked at"), "{text}");
        assert!(text.contains(file!()), "with its location: {text}");
        assert!(text.contains("expected in this test"), "{text}");
        assert_eq!(capture.take(), "", "take empties it");
    }

    #[test]
    fn a_thread_attached_to_a_capture_reports_into_it() {
        install_panic_hook();
        let capture = Capture::new();
        let inner = capture.clone();
        let joined = std::thread::spawn(move || {
            inner.attach();
            panic!("a peer gives up");
        })
        .join();
        assert!(joined.is_err());
        assert!(capture.take().contains("a peer gives up"));
    }
}
