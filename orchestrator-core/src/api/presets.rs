//! Preset listing (docs/COMPATIBILITY.md#presets-list): `ListPresetsRequest`,
//! `PresetsResponse`, `DeploymentPreset`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PresetCategory;
use super::error::{FieldError, Validate};
use super::topology::ServiceTopology;
use crate::events::BackendType;

/// `POST /orchestrator/presets/list` request (`ListPresetsRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPresetsRequest {
    /// Category filter (ignored upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<PresetCategory>,
}

impl Validate for ListPresetsRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `POST /orchestrator/presets/list` response (`PresetsResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresetsResponse {
    /// Every loadable preset.
    pub presets: Vec<DeploymentPreset>,
    /// Preset currently deployed (upstream: always `bannou`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_preset: Option<String>,
}

/// One preset as listed (`DeploymentPreset`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPreset {
    /// Preset name.
    pub name: String,
    /// Description, or `Preset: {name}`.
    pub description: String,
    /// Category when it matches the enum (`processing` in a preset file does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<PresetCategory>,
    /// Converted topology with computed node environments (`{"nodes": []}` for pool-only).
    pub topology: ServiceTopology,
    /// Preset-wide environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// Backends the preset supports (`None` or empty = all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_backends: Option<Vec<BackendType>>,
    /// Whether the preset ships with the orchestrator (default false).
    #[serde(default)]
    pub built_in: bool,
    /// File the preset came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::round_trip;
    use super::*;
    use serde_json::json;

    #[test]
    fn list_request_accepts_both_category_spellings() {
        let req: ListPresetsRequest = round_trip(json!({}), json!({}));
        assert_eq!(req.category, None);
        let req: ListPresetsRequest = round_trip(
            json!({"category": "testing"}),
            json!({"category": "Testing"}),
        );
        assert_eq!(req.category, Some(PresetCategory::Testing));
        assert!(req.validate().is_ok());
        let req: ListPresetsRequest = round_trip(
            json!({"category": "Production"}),
            json!({"category": "Production"}),
        );
        assert_eq!(req.category, Some(PresetCategory::Production));
        assert!(
            serde_json::from_value::<ListPresetsRequest>(json!({"category": "processing"}))
                .is_err()
        );
    }

    #[test]
    fn presets_response_round_trips() {
        let resp: PresetsResponse = round_trip(
            json!({"activePreset": "bannou", "presets": [
                {"name": "http-tests", "description": "HTTP tests",
                 "topology": {"nodes": [{"name": "bannou-main", "services": ["auth"],
                                         "environment": {"AUTH_SERVICE_ENABLED": "true"}}]},
                 "category": "testing", "requiredBackends": ["compose"],
                 "filePath": "/presets/http-tests.yaml"},
                {"name": "pool", "description": "Preset: pool", "topology": {"nodes": []}}
            ]}),
            json!({"activePreset": "bannou", "presets": [
                {"name": "http-tests", "description": "HTTP tests",
                 "topology": {"nodes": [{"name": "bannou-main", "services": ["auth"],
                                         "replicas": 1, "meshEnabled": true,
                                         "environment": {"AUTH_SERVICE_ENABLED": "true"}}]},
                 "category": "Testing", "requiredBackends": ["Compose"], "builtIn": false,
                 "filePath": "/presets/http-tests.yaml"},
                {"name": "pool", "description": "Preset: pool", "topology": {"nodes": []},
                 "builtIn": false}
            ]}),
        );
        assert_eq!(
            resp.presets[0].required_backends.as_deref(),
            Some(&[BackendType::Compose][..])
        );
    }
}
