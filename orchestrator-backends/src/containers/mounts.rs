//! The mounts a node's container gets on our Docker-engine backends, standalone Docker and
//! Swarm: one builder, [`NodeMounts::mounts`], whose list both backends put in their
//! create request (the container's `HostConfig.Mounts`, the task's `ContainerSpec.Mounts`).
//!
//! As upstream's Compose backend does (docs/COMPATIBILITY.md#docker-compose-backend):
//! - the named volume `ORCHESTRATOR_LOGS_VOLUME` (`logs-data`) at [`LOGS_MOUNT`],
//!   writable;
//! - the host directory `ORCHESTRATOR_CERTIFICATES_HOST_PATH` at [`CERTIFICATES_MOUNT`],
//!   read-only (the node's environment then says `SSL_CERT_DIR=/certificates`);
//! - the presets directory at [`PRESETS_MOUNT`], read-only.
//!
//! Each is optional: `None` mounts nothing there. A bind source must be an absolute path
//! that exists on the engine's machine (on every Swarm node for Swarm); the engine refuses
//! the container otherwise, with its reason, rather than creating an empty root-owned
//! directory as a legacy `Binds` entry would. Swarm extends upstream, whose Swarm backend
//! mounts nothing; Kubernetes and Portainer mount nothing, as upstream.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{Mount, MountType, MountVolumeOptions};
pub use orchestrator_core::ports::backend::CERTIFICATES_MOUNT;
use orchestrator_core::ports::backend::labels;

/// Where presets are mounted in a node.
pub const PRESETS_MOUNT: &str = "/app/provisioning/orchestrator/presets";
/// Where the logs volume is mounted in a node.
pub const LOGS_MOUNT: &str = "/app/logs";

/// What a node's container mounts. `Default` mounts nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMounts {
    /// Named volume mounted writable at [`LOGS_MOUNT`] (`ORCHESTRATOR_LOGS_VOLUME`); a
    /// volume the engine creates for it carries our managed label.
    pub logs_volume: Option<String>,
    /// Host directory mounted read-only at [`CERTIFICATES_MOUNT`]
    /// (`ORCHESTRATOR_CERTIFICATES_HOST_PATH`).
    pub certificates_host_path: Option<PathBuf>,
    /// Host directory mounted read-only at [`PRESETS_MOUNT`].
    pub presets_host_path: Option<PathBuf>,
}

impl NodeMounts {
    /// True when certificates are mounted (the node gets `SSL_CERT_DIR`).
    pub fn certificates_mounted(&self) -> bool {
        self.certificates_host_path.is_some()
    }

    /// The mounts, in the order certificates, presets, logs volume.
    pub fn mounts(&self) -> Vec<Mount> {
        let bind = |source: &PathBuf, target: &str| Mount {
            typ: Some(MountType::BIND),
            source: Some(source.display().to_string()),
            target: Some(target.to_owned()),
            read_only: Some(true),
            ..Default::default()
        };
        let mut out = Vec::new();
        if let Some(p) = &self.certificates_host_path {
            out.push(bind(p, CERTIFICATES_MOUNT));
        }
        if let Some(p) = &self.presets_host_path {
            out.push(bind(p, PRESETS_MOUNT));
        }
        if let Some(v) = &self.logs_volume {
            out.push(Mount {
                typ: Some(MountType::VOLUME),
                source: Some(v.clone()),
                target: Some(LOGS_MOUNT.to_owned()),
                read_only: Some(false),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(HashMap::from([(
                        labels::MANAGED.to_owned(),
                        labels::MANAGED_VALUE.to_owned(),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_configured_mounts_nothing() {
        let m = NodeMounts::default();
        assert!(m.mounts().is_empty());
        assert!(!m.certificates_mounted());
    }

    #[test]
    fn each_setting_becomes_its_mount_with_type_target_and_mode() {
        let m = NodeMounts {
            logs_volume: Some("logs-data".into()),
            certificates_host_path: Some("/srv/certs".into()),
            presets_host_path: Some("/srv/presets".into()),
        };
        assert!(m.certificates_mounted());
        let got: Vec<_> = m
            .mounts()
            .into_iter()
            .map(|m| {
                (
                    m.typ.unwrap(),
                    m.source.unwrap(),
                    m.target.unwrap(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    MountType::BIND,
                    "/srv/certs".to_owned(),
                    "/certificates".to_owned(),
                    Some(true)
                ),
                (
                    MountType::BIND,
                    "/srv/presets".to_owned(),
                    "/app/provisioning/orchestrator/presets".to_owned(),
                    Some(true)
                ),
                (
                    MountType::VOLUME,
                    "logs-data".to_owned(),
                    "/app/logs".to_owned(),
                    Some(false)
                ),
            ]
        );
        let volume = m.mounts().pop().unwrap();
        assert_eq!(
            volume.volume_options.unwrap().labels.unwrap()[labels::MANAGED],
            "true",
            "a volume the engine creates for the mount is ours"
        );
    }

    #[test]
    fn only_what_is_set_is_mounted() {
        let logs_only = NodeMounts {
            logs_volume: Some("v".into()),
            ..NodeMounts::default()
        };
        let mounts = logs_only.mounts();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some(LOGS_MOUNT));
        assert!(!logs_only.certificates_mounted());
        let certs_only = NodeMounts {
            certificates_host_path: Some("/c".into()),
            ..NodeMounts::default()
        };
        let mounts = certs_only.mounts();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some(CERTIFICATES_MOUNT));
    }
}
