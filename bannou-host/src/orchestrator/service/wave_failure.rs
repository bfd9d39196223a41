//! Why a deploy wave failed, per node ([`WaveFailure`]): the node, the wave, the kind of
//! failure and the node's last log lines. Answers, events and logs show its text (one
//! line, then the log lines indented); a backend refusal keeps the backend's error as
//! the `source()`.

use std::fmt;
use std::time::Duration;

use orchestrator_core::ports::backend::BackendError;

/// What went wrong with a node of a wave.
#[derive(Debug, Clone, PartialEq)]
pub enum WaveFailureKind {
    /// The backend refused to deploy the node.
    Deploy(BackendError),
    /// The node did not report every service healthy within `timeout`; `missing` lists
    /// `service (status)` for each one that was not.
    Unhealthy {
        /// The wave timeout.
        timeout: Duration,
        /// The services not healthy, each with its last status.
        missing: Vec<String>,
    },
    /// The node's process exited at start (or was restarted by its runtime): why.
    Exited {
        /// What the backend reported.
        why: String,
    },
    /// This replica stopped leading before the wave, so the deploy stopped there (no
    /// node: the leader reconciles).
    LostLeadership,
}

/// One node's failure in one wave.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveFailure {
    /// The node's name; `None` when the failure is not a node's
    /// ([`WaveFailureKind::LostLeadership`]).
    pub node: Option<String>,
    /// The wave's index.
    pub wave: usize,
    /// What went wrong.
    pub kind: WaveFailureKind,
    /// The node's last log lines (empty when none could be read).
    pub last_log_lines: Vec<String>,
}

impl WaveFailure {
    /// `node` failed `wave` with `kind`, no log lines yet.
    pub fn new(node: impl Into<String>, wave: usize, kind: WaveFailureKind) -> Self {
        WaveFailure {
            node: Some(node.into()),
            wave,
            kind,
            last_log_lines: Vec::new(),
        }
    }

    /// The deploy stopped before `wave` because this replica stopped leading.
    pub fn lost_leadership(wave: usize) -> Self {
        WaveFailure {
            node: None,
            wave,
            kind: WaveFailureKind::LostLeadership,
            last_log_lines: Vec::new(),
        }
    }
}

impl fmt::Display for WaveFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.node.as_deref().unwrap_or("-");
        let wave = self.wave;
        match &self.kind {
            WaveFailureKind::Deploy(e) => write!(f, "{node}: {e}")?,
            WaveFailureKind::Unhealthy { timeout, missing } => write!(
                f,
                "{node}: not healthy within {}s (wave {wave}): {}",
                timeout.as_secs_f64(),
                missing.join(", ")
            )?,
            WaveFailureKind::Exited { why } => {
                write!(f, "{node}: exited at start (wave {wave}): {why}")?
            }
            WaveFailureKind::LostLeadership => write!(
                f,
                "this replica stopped leading the control plane before wave {wave}: the \
                 deploy stopped there, and the leader reconciles it"
            )?,
        }
        if !self.last_log_lines.is_empty() {
            write!(f, "; last {} log line(s):", self.last_log_lines.len())?;
            for line in &self.last_log_lines {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for WaveFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            WaveFailureKind::Deploy(e) => Some(e),
            _ => None,
        }
    }
}

/// The failures' texts, as answers and events carry them.
pub fn texts(failures: &[WaveFailure]) -> Vec<String> {
    failures.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_node_wave_kind_and_log_lines() {
        let mut f = WaveFailure::new(
            "auth",
            2,
            WaveFailureKind::Unhealthy {
                timeout: Duration::from_millis(1500),
                missing: vec!["auth (unknown)".into(), "accounts (Degraded)".into()],
            },
        );
        assert_eq!(
            f.to_string(),
            "auth: not healthy within 1.5s (wave 2): auth (unknown), accounts (Degraded)"
        );
        f.last_log_lines = vec!["starting".into(), "panic: no config".into()];
        assert_eq!(
            f.to_string(),
            "auth: not healthy within 1.5s (wave 2): auth (unknown), accounts (Degraded); \
             last 2 log line(s):\n  starting\n  panic: no config"
        );
        let exited = WaveFailure::new(
            "a",
            0,
            WaveFailureKind::Exited {
                why: "code 1".into(),
            },
        );
        assert_eq!(exited.to_string(), "a: exited at start (wave 0): code 1");
        assert!(
            WaveFailure::lost_leadership(3)
                .to_string()
                .starts_with("this replica stopped leading the control plane before wave 3:")
        );
    }

    #[test]
    fn a_refused_deploy_keeps_the_backend_error() {
        let f = WaveFailure::new(
            "auth",
            0,
            WaveFailureKind::Deploy(BackendError::runtime("image missing")),
        );
        assert_eq!(f.to_string(), "auth: runtime error: image missing");
        let source = std::error::Error::source(&f).expect("the backend error");
        assert!(source.downcast_ref::<BackendError>().is_some());
    }
}
