//! Container backends as the host registers them: [`in_process`], the embedded default
//! (D15 (docs/DECISIONS.md#d15)), where a deployed node is a set of tasks in this process running
//! the same plugin host as a container would, and [`docker`], the Docker adapter of
//! `orchestrator-backends` with the rule that containers need a bus they can reach
//! (Redis) (also the Portainer backend: the Docker backend through Portainer's proxy),
//! [`swarm`], the Swarm adapter under the same rule, and [`unoffered`], the place holder
//! of a backend detection found unusable, with the reason. The adapters to Docker, Swarm,
//! Portainer and Kubernetes live in `orchestrator-backends`.

/// Implements `ContainerBackend` for a type: the methods written out in the braces, and
/// each method named in the list answered in one way: `(to FIELD)` passes it unchanged to
/// `self.FIELD`, `(refuse METHOD)` answers it with `self.METHOD()` (an error). Methods not
/// written out must be listed, so the compiler still sees every method of the trait.
macro_rules! container_backend {
    (impl for $ty:ty { $($own:tt)* } $how:tt [$($m:ident),* $(,)?]) => {
        container_backend!(@munch $ty, $how, [$($own)*], [$($m)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], []) => {
        #[async_trait::async_trait]
        impl ::orchestrator_core::ports::backend::ContainerBackend for $ty {
            $($done)*
        }
    };
    (@munch $ty:ty, (to $f:ident), [$($done:tt)*], [backend_type $($rest:ident)*]) => {
        container_backend!(@munch $ty, (to $f), [$($done)*
            fn backend_type(&self) -> ::orchestrator_core::events::BackendType {
                self.$f.backend_type()
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [deploy_node $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn deploy_node(
                &self,
                node: &::orchestrator_core::ports::backend::NodeDeployment,
            ) -> Result<::orchestrator_core::ports::backend::DeployedNode, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how deploy_node(node))
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [teardown $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn teardown(
                &self,
                app_id: &::orchestrator_core::AppId,
                options: &::orchestrator_core::ports::backend::TeardownOptions,
            ) -> Result<::orchestrator_core::ports::backend::TeardownResult, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how teardown(app_id, options))
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [scale $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn scale(
                &self,
                app_id: &::orchestrator_core::AppId,
                replicas: u32,
            ) -> Result<::orchestrator_core::ports::backend::ScaleResult, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how scale(app_id, replicas))
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [restart $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn restart(
                &self,
                app_id: &::orchestrator_core::AppId,
                options: &::orchestrator_core::ports::backend::RestartOptions,
            ) -> Result<::orchestrator_core::ports::backend::RestartOutcome, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how restart(app_id, options))
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [status $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn status(
                &self,
                app_id: &::orchestrator_core::AppId,
            ) -> Result<::orchestrator_core::ports::backend::ContainerStatusReport, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how status(app_id))
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [list $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn list(
                &self,
            ) -> Result<Vec<::orchestrator_core::ports::backend::ContainerInfo>, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how list())
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [logs $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn logs(
                &self,
                app_id: &::orchestrator_core::AppId,
                query: &::orchestrator_core::ports::backend::LogQuery,
            ) -> Result<Vec<::orchestrator_core::ports::backend::LogLine>, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how logs(app_id, query))
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [list_infrastructure $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn list_infrastructure(
                &self,
            ) -> Result<Vec<::orchestrator_core::ports::backend::InfrastructureInfo>, ::orchestrator_core::ports::backend::BackendError>
            {
                container_backend!(@call self $how list_infrastructure())
            }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $how:tt, [$($done:tt)*], [prune $($rest:ident)*]) => {
        container_backend!(@munch $ty, $how, [$($done)*
            async fn prune(
                &self,
                targets: &::std::collections::BTreeSet<::orchestrator_core::api::enums::CleanTarget>,
                older_than: Option<::std::time::Duration>,
            ) -> Result<::orchestrator_core::ports::backend::PruneReport, ::orchestrator_core::ports::backend::BackendError> {
                container_backend!(@call self $how prune(targets, older_than))
            }
        ], [$($rest)*]);
    };
    (@call $self:ident (to $f:ident) $m:ident($($a:ident),*)) => {
        $self.$f.$m($($a),*).await
    };
    (@call $self:ident (refuse $f:ident) $m:ident($($a:ident),*)) => {{
        let _ = ($($a,)*);
        $self.$f()
    }};
}

pub mod docker;
pub mod in_process;
pub mod swarm;
pub mod unoffered;

pub use docker::DockerNodes;
pub use in_process::InProcessBackend;
pub use swarm::SwarmNodes;
pub use unoffered::Unoffered;
