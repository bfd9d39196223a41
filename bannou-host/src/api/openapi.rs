//! The OpenAPI document of our API: upstream's `orchestrator-api.yaml` (paths and schema
//! names unchanged) plus our extensions, kept in `bannou-host/openapi/`. Served as YAML
//! as is, and as JSON converted once on first use.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Where the JSON document is served.
pub const JSON_PATH: &str = "/openapi.json";
/// Where the YAML document is served.
pub const YAML_PATH: &str = "/openapi.yaml";

/// The document, as written.
pub const OPENAPI_YAML: &str = include_str!("../../openapi/orchestrator-api.yaml");

/// The document as JSON. Panics only if the embedded YAML is invalid, which the tests
/// rule out.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_saphyr::from_str(OPENAPI_YAML).expect("the embedded OpenAPI document parses")
    })
}

/// The paths the document describes.
pub fn document_paths() -> BTreeSet<String> {
    document()["paths"]
        .as_object()
        .map(|paths| paths.keys().cloned().collect())
        .unwrap_or_default()
}

/// `GET /openapi.yaml`.
pub async fn serve_yaml() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        OPENAPI_YAML,
    )
        .into_response()
}

/// `GET /openapi.json`.
pub async fn serve_json() -> Response {
    super::json_response(200, document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_describes_every_route() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut expected: BTreeSet<String> = crate::api::protected_paths()
            .into_iter()
            .map(str::to_owned)
            .collect();
        expected.insert(crate::api::liveness::PATH.to_owned());
        assert_eq!(document_paths(), expected);
    }

    #[test]
    fn our_extensions_are_documented() {
        let s = &document()["components"]["schemas"];
        for (schema, field) in [
            ("DeployRequest", "strict"),
            ("DeployRequest", "autoRevert"),
            ("DeployRequest", "strategy"),
            ("DeployResponse", "switchedRoutes"),
            ("RouteSwitch", "mappingsVersion"),
            ("RouteSwitch", "replaced"),
            ("RouteSwitch", "ackWaitMs"),
            ("AcquireProcessorRequest", "waitMs"),
            ("AcquireProcessorResponse", "fencingToken"),
            ("ApiError", "error"),
            ("ApiError", "field"),
            ("ServiceRoutingResponse", "mappingsVersion"),
            ("ServiceRoutingResponse", "nodeVersions"),
            ("ServiceRoutingResponse", "nodesBehind"),
            ("ServiceRoutingResponse", "weightedMappings"),
            ("WeightedTarget", "weight"),
            ("DeployResponse", "routingLaggards"),
            ("TeardownResponse", "routingLaggards"),
            ("TopologyUpdateResponse", "routingLaggards"),
            ("ConfigRollbackResponse", "routingLaggards"),
            ("PoolStatusResponse", "recentAcquireP50Ms"),
            ("PoolStatusResponse", "recentAcquireP99Ms"),
            ("RenewProcessorRequest", "leaseId"),
            ("RenewProcessorRequest", "fencingToken"),
            ("RenewProcessorRequest", "extendSeconds"),
            ("RenewProcessorResponse", "expiresAt"),
            ("DrainPoolRequest", "processorId"),
            ("DrainPoolRequest", "deadlineSeconds"),
            ("DrainPoolResponse", "draining"),
            ("DrainPoolResponse", "deadline"),
            ("DeployRequest", "canaryWeight"),
            ("DeployRequest", "canaryPromoteAfterSeconds"),
            ("DeployResponse", "canary"),
            ("CanaryStatus", "weight"),
            ("CanaryActionRequest", "deploymentId"),
            ("CanaryActionResponse", "stoppedNodes"),
            ("CanaryActionResponse", "routingLaggards"),
        ] {
            assert!(
                s[schema]["properties"][field].is_object(),
                "{schema}.{field} is missing"
            );
        }
        let acquire = &document()["paths"]["/orchestrator/processing-pool/acquire"]["post"];
        assert!(acquire["responses"]["429"].is_object());
        let paths = &document()["paths"];
        let renew = &paths["/orchestrator/processing-pool/renew"]["post"];
        assert_eq!(renew["operationId"], "RenewProcessor");
        assert!(renew["responses"]["409"].is_object() && renew["responses"]["404"].is_object());
        let drain = &paths["/orchestrator/processing-pool/drain"]["post"];
        assert_eq!(drain["operationId"], "DrainPool");
        assert!(drain["responses"]["404"].is_object());
        for (path, id) in [
            ("/orchestrator/promote", "PromoteCanary"),
            ("/orchestrator/abort", "AbortCanary"),
        ] {
            let op = &paths[path]["post"];
            assert_eq!(op["operationId"], id);
            assert!(op["responses"]["404"].is_object() && op["responses"]["409"].is_object());
        }
        assert!(
            document()["components"]["securitySchemes"]["bearerAuth"]["scheme"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        );
        // No reference may point outside the document.
        assert!(!OPENAPI_YAML.contains("common-api.yaml#"));
        // Every local reference resolves.
        for line in OPENAPI_YAML.lines() {
            if let Some(rest) = line.trim().strip_prefix("$ref: '#/components/schemas/") {
                let name = rest.trim_end_matches('\'');
                assert!(s[name].is_object(), "dangling $ref to {name}");
            }
        }
    }
}
