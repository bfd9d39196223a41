//! The foreign cause an error keeps (decision D61, docs/DECISIONS.md#d61): a Redis, Docker
//! or Kubernetes client error held behind the port's own error type, so the domain crates
//! name no client library yet `source()` still reaches the client's error.
//!
//! Invariants: an [`ErrorSource`] is cheap to clone (one `Arc`) because port errors are
//! cloned (scripted fakes, retries); two sources are equal when their texts are. The
//! error that holds one marks the field `#[source]`: thiserror then returns the foreign
//! error itself (not a wrapper), so `downcast_ref` on the chain finds the client's type.
//! [`Chain`] prints an error with its causes for logs.

use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A foreign error kept as the cause of a port error. Not an error itself: it dereferences
/// to the foreign error, which is what `source()` returns.
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn Error + Send + Sync + 'static>);

impl ErrorSource {
    /// Keeps `e` as a cause.
    pub fn new(e: impl Error + Send + Sync + 'static) -> Self {
        ErrorSource(Arc::new(e))
    }

    /// Keeps an already boxed cause.
    pub fn from_boxed(e: Box<dyn Error + Send + Sync + 'static>) -> Self {
        ErrorSource(Arc::from(e))
    }
}

impl Deref for ErrorSource {
    type Target = dyn Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl PartialEq for ErrorSource {
    /// Equal when the texts are (the foreign types need not be comparable).
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for ErrorSource {}

/// Displays an error and each of its causes, `outer: cause: cause`, for logs (`%e` alone
/// prints only the outer text). A cause whose text the printed part already contains is
/// skipped, so errors that quote their cause in their own text do not print it twice.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !printed.contains(&text) {
                printed.push_str(": ");
                printed.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&printed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client failed")]
    struct Client;

    #[derive(Debug, thiserror::Error)]
    #[error("io: {inner}")]
    struct Quoting {
        #[source]
        inner: Client,
    }

    #[derive(Debug, Clone, PartialEq, thiserror::Error)]
    #[error("port failed")]
    struct Port {
        #[source]
        source: ErrorSource,
    }

    #[test]
    fn the_chain_reaches_the_foreign_error_itself() {
        let e = Port {
            source: ErrorSource::new(Client),
        };
        let cause = e.source().expect("a source");
        assert!(cause.downcast_ref::<Client>().is_some(), "{cause:?}");
        assert_eq!(e.clone(), e);
    }

    #[test]
    fn the_chain_prints_each_cause_once() {
        let e = Port {
            source: ErrorSource::new(Quoting { inner: Client }),
        };
        assert_eq!(Chain(&e).to_string(), "port failed: io: client failed");
    }
}
