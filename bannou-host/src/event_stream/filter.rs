//! [`Filter`]: which events a client of the stream wants (`?types=`, `?deployment=`).
//! Without types a client gets every event but raw heartbeats, which only a filter that
//! names [`HEARTBEAT_TYPE`] receives.

use super::{EVENT_TYPES, HEARTBEAT_TYPE, StreamEvent};

/// Which events a client wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Type names or prefixes (`wave`, `deployment.failed`); empty means every type but
    /// raw heartbeats.
    pub types: Vec<String>,
    /// Only events of this deployment.
    pub deployment: Option<String>,
}

impl Filter {
    /// Parses a `types` list (comma-separated); an unknown name is an error naming it.
    pub fn parse_types(list: &str) -> Result<Vec<String>, String> {
        let mut types = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let known = EVENT_TYPES
                .iter()
                .any(|t| *t == name || t.split('.').next() == Some(name));
            if !known {
                return Err(format!(
                    "unknown event type `{name}` (known: {})",
                    EVENT_TYPES.join(", ")
                ));
            }
            types.push(name.to_owned());
        }
        Ok(types)
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &StreamEvent) -> bool {
        let typed = if self.types.is_empty() {
            event.kind != HEARTBEAT_TYPE
        } else {
            self.types.iter().any(|t| {
                event.kind == t
                    || (event.kind.split('.').next() == Some(t.as_str())
                        && event.kind != HEARTBEAT_TYPE)
            })
        };
        typed
            && self
                .deployment
                .as_ref()
                .is_none_or(|d| event.deployment.as_ref() == Some(d))
    }

    pub(super) fn wants_heartbeats(&self) -> bool {
        self.types.iter().any(|t| t == HEARTBEAT_TYPE)
    }
}
