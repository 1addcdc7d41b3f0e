//! How a test, or one of its bodies, did not pass: one type from the body's return
//! value up to the harness's report.

use std::fmt;

use crate::error::Error;

/// How a test, or one of its bodies, did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The test cannot run here: the kernel lacks a feature (a body returned
    /// [`Error::Unsupported`], or the network could not be built for that reason). The
    /// harness reports the test as ignored with this reason, not as failed.
    Unsupported(String),
    /// The test failed; the text explains (which peer, what, and the network's state).
    Failed(String),
}

impl Failure {
    /// What went wrong, or why the test cannot run.
    pub fn message(&self) -> &str {
        match self {
            Failure::Unsupported(m) | Failure::Failed(m) => m,
        }
    }

    /// True when the test cannot run here rather than failed.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Failure::Unsupported(_))
    }

    /// The failure with `context` said first ("peer 2 failed: ..."). A reason to
    /// ignore the test stays as it is: it is about the kernel, not about a body.
    pub(crate) fn within(self, context: impl fmt::Display) -> Self {
        match self {
            Failure::Failed(m) => Failure::Failed(format!("{context}: {m}")),
            unsupported => unsupported,
        }
    }

    /// A linkem error: `Unsupported` makes the test ignored, anything else fails it.
    pub(crate) fn from_error(error: &Error) -> Self {
        match error {
            Error::Unsupported { .. } => Failure::Unsupported(error.to_string()),
            e => Failure::Failed(e.to_string()),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Failed(message.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// What a test body may return: `()`, or `Result<(), E>` with `E: Debug`.
///
/// An error is shown as libtest shows it, by its `Debug` text, except for the errors
/// whose `Display` is the sentence a reader wants: [`linkem::Error`](crate::Error)
/// (whose `Debug` is its sentence too) and [`std::io::Error`] ("connection refused
/// (os error 111)" rather than `Os { code: 111, .. }`). A linkem error saying the
/// kernel lacks a feature makes the test ignored, not failed.
#[diagnostic::on_unimplemented(
    message = "a linkem test body must return `()` or `Result<(), E>` with `E: Debug`, not `{Self}`",
    label = "returns `{Self}`, not `()` or `Result<(), E: Debug>`"
)]
pub trait IntoTestOutcome {
    /// Turns the body's return value into its outcome.
    fn into_outcome(self) -> Result<(), Failure>;
}

impl IntoTestOutcome for () {
    fn into_outcome(self) -> Result<(), Failure> {
        Ok(())
    }
}

impl<E: fmt::Debug + 'static> IntoTestOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), Failure> {
        self.map_err(|e| {
            let any = &e as &dyn std::any::Any;
            if let Some(error) = any.downcast_ref::<Error>() {
                Failure::from_error(error)
            } else if let Some(error) = any.downcast_ref::<std::io::Error>() {
                Failure::Failed(error.to_string())
            } else {
                Failure::Failed(format!("{e:?}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(().into_outcome(), Ok(()));
        assert_eq!(Ok::<(), std::io::Error>(()).into_outcome(), Ok(()));
        assert_eq!(
            Err::<(), _>("boom").into_outcome(),
            Err(Failure::Failed("\"boom\"".into())),
            "others by Debug, as libtest"
        );
    }

    #[test]
    fn linkem_and_io_errors_read_as_sentences() {
        let unknown = Err::<(), _>(Error::UnknownPeer(crate::network::PeerId(7))).into_outcome();
        assert_eq!(
            unknown,
            Err(Failure::Failed(
                "unknown peer 7: this network has no such peer".into()
            ))
        );
        let io = std::io::Error::from_raw_os_error(nix::errno::Errno::ECONNREFUSED as i32);
        let Err(Failure::Failed(text)) = Err::<(), _>(io).into_outcome() else {
            panic!("an io error fails the test");
        };
        assert!(text.contains("refused") && !text.contains("Os {"), "{text}");
    }

    #[test]
    fn unsupported_ignores_the_test() {
        let outcome = Err::<(), _>(Error::Unsupported {
            feature: "delay".into(),
            module: "sch_netem",
            hint: "load it",
        })
        .into_outcome();
        assert!(
            matches!(outcome, Err(ref f) if f.is_unsupported()),
            "{outcome:?}"
        );
        let failure = outcome.unwrap_err();
        assert_eq!(failure.clone().within("peer 1 failed"), failure);
        assert_eq!(
            Failure::from("x").within("peer 1 failed"),
            Failure::Failed("peer 1 failed: x".into())
        );
    }
}
