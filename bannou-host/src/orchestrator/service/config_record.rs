//! The configuration version a deployment saves (docs/COMPATIBILITY.md#saving-a-version).
//!
//! Invariant: secret-looking environment variables are never saved.

use std::collections::BTreeMap;

use orchestrator_core::events::BackendType;
use orchestrator_core::records::{DeploymentConfiguration, ServiceDeploymentConfig};
use orchestrator_core::{ResolvedNode, Timestamp};

/// Whether an environment variable name looks secret (docs/COMPATIBILITY.md#deploy step 11:
/// `PASSWORD`, `SECRET` or `KEY` anywhere in the name, any case; this also drops e.g.
/// `MONKEY`, as upstream does).
pub(super) fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "KEY"]
        .iter()
        .any(|p| upper.contains(p))
}

/// What a deployment saves as its configuration version (docs/COMPATIBILITY.md#saving-a-version).
pub(super) struct ConfigRecord<'a> {
    /// The deployment's id.
    pub deployment_id: &'a str,
    /// The preset deployed (`None` for an ad-hoc topology).
    pub preset: Option<&'a str>,
    /// The backend used (recorded, and named in the description).
    pub backend: BackendType,
    /// The request's environment (secrets are dropped).
    pub request_environment: &'a BTreeMap<String, String>,
    /// The nodes now deployed.
    pub nodes: &'a [ResolvedNode],
}

impl ConfigRecord<'_> {
    /// The record (version assigned by the store): every routed service enabled on its
    /// node, the request environment minus secrets, and the nodes themselves so a
    /// rollback or revert can redeploy exactly.
    pub fn build(&self, now: Timestamp) -> DeploymentConfiguration {
        let mut services = BTreeMap::new();
        for node in self.nodes {
            for s in &node.routed_services {
                services.insert(
                    s.clone(),
                    ServiceDeploymentConfig {
                        enabled: true,
                        app_id: Some(node.app_id.as_str().to_owned()),
                        replicas: 1,
                        settings: BTreeMap::new(),
                    },
                );
            }
        }
        DeploymentConfiguration {
            deployment_id: Some(self.deployment_id.to_owned()),
            preset_name: self.preset.map(str::to_owned),
            services,
            environment_variables: self
                .request_environment
                .iter()
                .filter(|(k, _)| !is_secret_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            description: Some(format!(
                "Deployment {} via {}",
                self.deployment_id, self.backend
            )),
            nodes: self.nodes.to_vec(),
            backend: Some(self.backend),
            ..DeploymentConfiguration::empty(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_follow_upstream_substring_rule() {
        for k in ["DB_PASSWORD", "jwt_secret", "API_KEY", "MONKEY"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["LOG_LEVEL", "AUTH_JWT_ISSUER"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
