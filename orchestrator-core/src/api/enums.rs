//! Every API enum of docs/COMPATIBILITY.md#enum-values, spelled per D1
//! (docs/DECISIONS.md#d1) (runtime spelling out, any spelling in). Event enums live in
//! [`crate::events`]; `ServiceLayerType` is [`crate::Layer`].

use crate::lenient_enum;

lenient_enum! {
    /// How a deploy treats running containers.
    pub enum DeploymentMode {
        /// Replace gracefully (default).
        Graceful => "Graceful",
        /// Replace without waiting.
        Force => "Force",
        /// Remove everything first.
        Clean => "Clean",
    }
}

lenient_enum! {
    /// How a teardown stops containers.
    pub enum TeardownMode {
        /// Stop gracefully (default).
        Graceful => "Graceful",
        /// Kill.
        Force => "Force",
        /// Keep volumes.
        PreserveData => "PreserveData",
    }
}

lenient_enum! {
    /// What `clean` removes.
    pub enum CleanTarget {
        /// Stopped/orphaned containers.
        Containers => "Containers",
        /// Unused networks.
        Networks => "Networks",
        /// Unused volumes.
        Volumes => "Volumes",
        /// Dangling images.
        Images => "Images",
        /// All of the above.
        All => "All",
    }
}

lenient_enum! {
    /// Preset category (free text in preset files; this enum is the API filter).
    pub enum PresetCategory {
        /// Development.
        Development => "Development",
        /// Testing.
        Testing => "Testing",
        /// Production.
        Production => "Production",
        /// Custom.
        Custom => "Custom",
    }
}

lenient_enum! {
    /// Container state as backends report it.
    pub enum ContainerStatusType {
        /// Running.
        Running => "Running",
        /// Starting (created, restarting, pending).
        Starting => "Starting",
        /// Stopping.
        Stopping => "Stopping",
        /// Stopped (exited, dead, absent).
        Stopped => "Stopped",
        /// Running but failing its health check.
        Unhealthy => "Unhealthy",
    }
}

lenient_enum! {
    /// State of a deployed service in a status report.
    pub enum DeployedServiceStatus {
        /// Starting.
        Starting => "Starting",
        /// Running, health unknown.
        Running => "Running",
        /// Running and healthy.
        Healthy => "Healthy",
        /// Running and unhealthy.
        Unhealthy => "Unhealthy",
        /// Stopped.
        Stopped => "Stopped",
    }
}

lenient_enum! {
    /// A live topology change (docs/COMPATIBILITY.md#topology-updates).
    pub enum TopologyChangeAction {
        /// Deploy a new node.
        AddNode => "AddNode",
        /// Tear a node down.
        RemoveNode => "RemoveNode",
        /// Re-route services.
        MoveService => "MoveService",
        /// Change replica count.
        Scale => "Scale",
        /// Redeploy with new environment.
        UpdateEnv => "UpdateEnv",
    }
}

lenient_enum! {
    /// Output stream of a log line (D13 (docs/DECISIONS.md#d13)).
    pub enum LogStreamType {
        /// Standard output.
        Stdout => "Stdout",
        /// Standard error.
        Stderr => "Stderr",
    }
}

lenient_enum! {
    /// Ingress flavour (accepted, unused).
    pub enum IngressType {
        /// OpenResty.
        Openresty => "Openresty",
        /// nginx.
        Nginx => "Nginx",
        /// Traefik.
        Traefik => "Traefik",
        /// None.
        None => "None",
    }
}

lenient_enum! {
    /// How several containers are restarted.
    pub enum RestartStrategy {
        /// One at a time.
        Rolling => "Rolling",
        /// All at once.
        Simultaneous => "Simultaneous",
    }
}

lenient_enum! {
    /// Health of an infrastructure component.
    pub enum ComponentHealthStatus {
        /// Healthy.
        Healthy => "Healthy",
        /// Degraded.
        Degraded => "Degraded",
        /// Unavailable.
        Unavailable => "Unavailable",
    }
}

lenient_enum! {
    /// Urgency of a container restart request.
    pub enum RestartPriority {
        /// Wait for in-flight work.
        Graceful => "Graceful",
        /// Restart now.
        Immediate => "Immediate",
        /// Kill and restart.
        Force => "Force",
    }
}

lenient_enum! {
    /// Which entries a services-health report includes (docs/COMPATIBILITY.md#health-report).
    pub enum ServiceHealthSource {
        /// Control plane and deployed nodes.
        All => "All",
        /// Only this process's plugins.
        ControlPlaneOnly => "ControlPlaneOnly",
        /// Only deployed nodes.
        DeployedOnly => "DeployedOnly",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_and_runtime_spellings_both_parse() {
        assert_eq!(
            "control_plane_only".parse::<ServiceHealthSource>().unwrap(),
            ServiceHealthSource::ControlPlaneOnly
        );
        assert_eq!(
            "preserve-data".parse::<TeardownMode>().unwrap(),
            TeardownMode::PreserveData
        );
        assert_eq!(
            "add-node".parse::<TopologyChangeAction>().unwrap(),
            TopologyChangeAction::AddNode
        );
        assert_eq!(TopologyChangeAction::AddNode.to_string(), "AddNode");
    }
}
