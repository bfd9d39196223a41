//! A resolved topology: the concrete nodes a deployment consists of.
//!
//! The resolver ([`crate::resolver`]) produces [`ResolvedNode`]s from a preset or a request
//! topology; the planner ([`crate::planner`]) compares two lists of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::AppId;

/// One node (container) with everything needed to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedNode {
    /// Node name from the topology.
    pub name: String,
    /// Its app-id (`appId`, else `name`).
    pub app_id: AppId,
    /// Every service the node hosts once its environment is applied
    /// (docs/COMPATIBILITY.md#enablement-rule), sorted, canonical names, infrastructure
    /// included.
    pub services: Vec<String>,
    /// Services whose routing points at this node (the node's `services` list), sorted.
    pub routed_services: Vec<String>,
    /// The full environment the node is started with
    /// (docs/COMPATIBILITY.md#environment-layering), sorted by key.
    pub environment: BTreeMap<String, String>,
    /// Requested replicas (1 by default).
    pub replicas: u32,
    /// Carried through from the topology.
    pub mesh_enabled: bool,
}
