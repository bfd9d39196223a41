//! Fuzz target `api_request`: HTTP request body bytes -> every request type of the API.
//!
//! Each input is decoded as each of the 22 request types through the path the axum
//! handlers take, `bannou_host::api::decode` (JSON object, named field paths, then
//! `Validate`), and through `orchestrator_core::api::decode_request`. Checks:
//! - neither panics, and an error body always serialises;
//! - for a JSON object both accept or both refuse;
//! - an accepted request serialises, and decodes back to the same request (what the
//!   typed client sends is what the server reads);
//! - an accepted `DeployRequest` topology resolves and plans (or is refused) without a
//!   panic, as `POST /orchestrator/deploy` would take it.
//!
//! Seeds are plain JSON bodies; no byte selects the type, every type reads every input.

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use bannou_host::api::decode;
use libfuzzer_sys::fuzz_target;
use orchestrator_core::Catalog;
use orchestrator_core::api::*;
use orchestrator_core::planner::{self, PlanOptions};
use orchestrator_core::resolver::{self, NodeInput, ResolveInput};
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    check::<InfrastructureHealthRequest>(data);
    check::<ServiceHealthRequest>(data);
    check::<ServiceRestartRequest>(data);
    check::<ShouldRestartServiceRequest>(data);
    check::<ListBackendsRequest>(data);
    check::<ListPresetsRequest>(data);
    if let Some(deploy) = check::<DeployRequest>(data) {
        resolve_and_plan(&deploy);
    }
    check::<GetServiceRoutingRequest>(data);
    check::<GetStatusRequest>(data);
    check::<TeardownRequest>(data);
    check::<CleanRequest>(data);
    check::<GetLogsRequest>(data);
    check::<TopologyUpdateRequest>(data);
    check::<ContainerRestartRequestBody>(data);
    check::<GetContainerStatusRequest>(data);
    check::<ConfigRollbackRequest>(data);
    check::<GetConfigVersionRequest>(data);
    check::<AcquireProcessorRequest>(data);
    check::<ReleaseProcessorRequest>(data);
    check::<GetPoolStatusRequest>(data);
    check::<ScalePoolRequest>(data);
    check::<CleanupPoolRequest>(data);
});

/// Decodes `data` as `T` both ways and checks the invariants above; the request when the
/// handler path accepts it.
fn check<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + Validate + PartialEq + Debug,
{
    let handler = decode::<T>(data);
    let core = decode_request::<T>(data);
    let is_object = data
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|b| *b == b'{');
    if is_object {
        assert_eq!(
            handler.is_ok(),
            core.is_ok(),
            "{}: handler {:?} vs core {:?}",
            std::any::type_name::<T>(),
            handler.as_ref().err(),
            core.as_ref().err()
        );
    }
    for error in [handler.as_ref().err(), core.as_ref().err()]
        .into_iter()
        .flatten()
    {
        serde_json::to_vec(error).expect("an error body serialises");
    }
    let request = handler.ok()?;
    let bytes = serde_json::to_vec(&request).expect("an accepted request serialises");
    let again = decode::<T>(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} re-encoded as {} is refused: {e:?}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(
        again, request,
        "round trip through JSON changed the request"
    );
    Some(request)
}

/// What `POST /orchestrator/deploy` does with a request topology before touching
/// anything: resolve it (docs/COMPATIBILITY.md#environment-layering) and plan it against an
/// empty deployment.
fn resolve_and_plan(request: &DeployRequest) {
    let catalog = Catalog::builtin();
    let nodes: Vec<NodeInput> = request
        .topology
        .iter()
        .flat_map(|t| &t.nodes)
        .map(node_input)
        .collect();
    let request_env = request.environment.clone().unwrap_or_default();
    let resolved = match resolver::resolve(&ResolveInput {
        catalog,
        orchestrator_environment: &BTreeMap::new(),
        preset_environment: &BTreeMap::new(),
        request_environment: &request_env,
        nodes: &nodes,
        pools: &[],
    }) {
        Ok(resolved) => resolved,
        Err(e) => {
            std::hint::black_box(e.to_string());
            return;
        }
    };
    let options = PlanOptions {
        control_plane_services: None,
        strict: request.strict,
    };
    match planner::plan(&[], &resolved.nodes, catalog, &options) {
        Ok(plan) => std::hint::black_box(format!("{plan:?}")),
        Err(rejected) => std::hint::black_box(rejected.to_string()),
    };
}

/// A request topology node as resolver input; the same conversion as the private
/// `node_input` of `bannou-host/src/orchestrator/service/deploy.rs`.
fn node_input(node: &TopologyNode) -> NodeInput {
    NodeInput {
        name: node.name.clone(),
        app_id: node.app_id.clone(),
        layers: node.layers.clone().unwrap_or_default(),
        services: node.services.clone().unwrap_or_default(),
        replicas: u32::try_from(node.replicas.max(1)).unwrap_or(u32::MAX),
        environment: node.environment.clone().unwrap_or_default(),
        mesh_enabled: node.mesh_enabled,
    }
}
