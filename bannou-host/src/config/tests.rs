use super::*;

#[test]
fn the_logged_copy_shows_no_redis_password_nor_the_process_environment() {
    let mut cfg = HostConfig::from_env(|name| match name {
        "ORCHESTRATOR_REDIS_CONNECTION_STRING" => {
            Some("rediss://app:s3cret-pw@redis.internal:6380/2".into())
        }
        _ => None,
    })
    .unwrap();
    cfg.node_redis_url = Some("redis://node:n0de-pw@10.0.0.5:6379/".into());
    cfg.host_environment
        .insert("OTHER_SERVICE_KEY".into(), "env-secret".into());
    let raw = format!("{cfg:?}");
    assert!(raw.contains("s3cret-pw"), "the check below can fail");
    let shown = format!("{:?}", cfg.for_log());
    for secret in ["s3cret-pw", "n0de-pw", "env-secret", "OTHER_SERVICE_KEY"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("redis.internal:6380"), "{shown}");
}

fn config(vars: &[(&str, &str)]) -> Result<HostConfig, ConfigError> {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    HostConfig::from_env(|name| map.get(name).cloned())
}

fn error_of(name: &str, value: &str) -> ConfigError {
    config(&[(name, value)]).expect_err(&format!("{name}={value} must be rejected"))
}

#[test]
fn nothing_set_gives_upstream_defaults_and_ours() {
    let c = config(&[]).unwrap();
    assert!(c.secure_websocket);
    assert_eq!(
        c.default_backend,
        BackendType::InProcess,
        "the embedded default"
    );
    assert_eq!(c.heartbeat_timeout, Duration::from_secs(90));
    assert_eq!(c.degradation_threshold, Duration::from_secs(300));
    assert_eq!(c.portainer_endpoint_id, 1);
    assert_eq!(c.docker_image_name, "bannou:latest");
    assert_eq!(c.docker_network, "bannou_default");
    assert_eq!(c.openresty_port, 80);
    assert!(!c.openresty_enabled);
    assert_eq!(c.routing_ttl, Duration::from_secs(300));
    assert_eq!(c.config_history_ttl, Duration::from_secs(30 * 86_400));
    assert_eq!(c.health_check_interval, Duration::from_millis(2000));
    assert_eq!(c.lease_cleanup_interval, Duration::from_secs(60));
    assert_eq!(c.full_mappings_interval, Duration::from_secs(30));
    assert_eq!(c.default_service_port, 80);
    assert_eq!(c.redis_url, None, "Redis only when asked for");
    assert_eq!(c.app_id, AppId::control_plane());
    assert!(c.heartbeat_enabled);
    assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert!(c.api_token.is_none());
    assert_eq!(c.wave_timeout, Duration::from_secs(120));
    assert_eq!(c.deploy_parallelism, 8);
    assert!(c.scaler.autoscale);
    assert_eq!(c.leader_lease, Duration::from_secs(10));
    assert_eq!(c.reconcile_interval, Duration::from_secs(30));
    assert_eq!(c.reconcile_grace, Duration::from_secs(60));
    assert!(c.elector_config().candidate_id.starts_with("bannou-"));
    assert_ne!(
        c.elector_config().candidate_id,
        c.elector_config().candidate_id,
        "a fresh candidate id each time"
    );
    assert!(c.check_exposure().is_ok());
    assert!(c.check_app_id().is_ok());
    assert!(c.openresty().is_none());
}

#[test]
fn values_are_read_with_their_units() {
    let c = config(&[
        ("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "7"),
        ("ORCHESTRATOR_DEGRADATION_THRESHOLD_MINUTES", "2"),
        ("ORCHESTRATOR_CONFIG_HISTORY_TTL_DAYS", "1"),
        ("ORCHESTRATOR_HEALTH_CHECK_INTERVAL_MS", "100"),
        ("ORCHESTRATOR_ORPHAN_CONTAINER_THRESHOLD_HOURS", "3"),
        ("ORCHESTRATOR_LEASE_CLEANUP_INTERVAL_SECONDS", "10"),
        ("ORCHESTRATOR_OPENRESTY_HOST", " edge "),
        ("ORCHESTRATOR_OPENRESTY_PORT", "65535"),
        ("ORCHESTRATOR_REDIS_CONNECTION_STRING", "bannou-redis:6379"),
        ("ORCHESTRATOR_NODE_REDIS_URL", "10.1.2.3:6379"),
        ("ORCHESTRATOR_PORTAINER_API_KEY", "k"),
        ("ORCHESTRATOR_API_TOKEN", "t0ken"),
        ("ORCHESTRATOR_LISTEN", "0.0.0.0:9000"),
        ("ORCHESTRATOR_POOL_AUTOSCALE", "false"),
        ("ORCHESTRATOR_DOCKER_IMAGE_NAME", "bannou:test"),
        ("BANNOU_APP_ID", "BANNOU"),
        ("BANNOU_HEARTBEAT_ENABLED", "no"),
        ("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "5"),
        ("ORCHESTRATOR_LEADER_LEASE_SECONDS", "2"),
        ("ORCHESTRATOR_LEADER_ID_PREFIX", " orch-pod-1 "),
        ("ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS", "0"),
        ("ORCHESTRATOR_RECONCILE_GRACE_SECONDS", "5"),
    ])
    .unwrap();
    assert_eq!(c.leader_lease, Duration::from_secs(2));
    assert_eq!(c.reconcile_interval, Duration::ZERO, "0: once only");
    assert_eq!(c.reconcile_grace, Duration::from_secs(5));
    let elector = c.elector_config();
    assert!(
        elector.candidate_id.starts_with("orch-pod-1-"),
        "{}",
        elector.candidate_id
    );
    assert_eq!(elector.lease, Duration::from_secs(2));
    assert_eq!(c.heartbeat_timeout, Duration::from_secs(7));
    assert_eq!(c.degradation_threshold, Duration::from_secs(120));
    assert_eq!(c.config_history_ttl, Duration::from_secs(86_400));
    assert_eq!(c.health_check_interval, Duration::from_millis(100));
    assert_eq!(c.orphan_container_threshold, Duration::from_secs(3 * 3600));
    assert_eq!(c.lease_cleanup_interval, Duration::from_secs(10));
    assert!(c.openresty_enabled);
    let openresty = c.openresty().unwrap();
    assert_eq!((openresty.host(), openresty.port()), ("edge", 65535));
    assert_eq!(c.redis_url.as_deref(), Some("redis://bannou-redis:6379"));
    assert_eq!(c.node_redis_url.as_deref(), Some("redis://10.1.2.3:6379"));
    assert_eq!(c.api_token.as_ref().unwrap().expose(), "t0ken");
    assert!(c.check_exposure().is_ok(), "a token allows any address");
    assert!(!c.scaler.autoscale);
    assert_eq!(c.scaler_config().default_image, "bannou:test");
    assert!(c.check_app_id().is_ok(), "app-id is case-insensitive");
    assert!(!c.heartbeat_enabled);
    assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
    let printed = format!("{c:?}");
    assert!(!printed.contains("t0ken"), "secrets are masked: {printed}");
    let s = c.service_settings();
    assert_eq!(s.heartbeat_timeout, Duration::from_secs(7));
    assert_eq!(s.image, "bannou:test");
    assert!(s.openresty.is_some());
}

#[test]
fn every_range_is_enforced_and_the_error_names_variable_and_value() {
    let cases: &[(&str, &str)] = &[
        ("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_DEGRADATION_THRESHOLD_MINUTES", "0"),
        ("ORCHESTRATOR_PORTAINER_ENDPOINT_ID", "0"),
        ("ORCHESTRATOR_PORTAINER_REQUEST_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_OPENRESTY_PORT", "0"),
        ("ORCHESTRATOR_OPENRESTY_PORT", "65536"),
        ("ORCHESTRATOR_OPENRESTY_REQUEST_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_HEARTBEAT_TTL_SECONDS", "0"),
        ("ORCHESTRATOR_ROUTING_TTL_SECONDS", "0"),
        ("ORCHESTRATOR_CONFIG_HISTORY_TTL_DAYS", "0"),
        ("ORCHESTRATOR_RESTART_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_HEALTH_CHECK_INTERVAL_MS", "99"),
        ("ORCHESTRATOR_DEFAULT_WAIT_BEFORE_KILL_SECONDS", "0"),
        ("ORCHESTRATOR_CONTAINER_STATUS_POLL_INTERVAL_SECONDS", "0"),
        ("ORCHESTRATOR_FULL_MAPPINGS_INTERVAL_SECONDS", "0"),
        ("ORCHESTRATOR_ORPHAN_CONTAINER_THRESHOLD_HOURS", "0"),
        ("ORCHESTRATOR_INDEX_UPDATE_MAX_RETRIES", "0"),
        ("ORCHESTRATOR_DEFAULT_POOL_LEASE_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_POOL_LOCK_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_LEASE_CLEANUP_INTERVAL_SECONDS", "9"),
        ("ORCHESTRATOR_DEFAULT_SERVICE_PORT", "0"),
        ("ORCHESTRATOR_DEFAULT_SERVICE_PORT", "70000"),
        ("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "0"),
        ("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "0"),
        ("ORCHESTRATOR_DEPLOY_PARALLELISM", "0"),
        ("ORCHESTRATOR_PORTAINER_URL", "portainer:9000"),
        ("ORCHESTRATOR_PORTAINER_URL", "https://"),
        ("ORCHESTRATOR_LEADER_LEASE_SECONDS", "1"),
    ];
    for (name, value) in cases {
        let e = error_of(name, value);
        let text = e.to_string();
        assert!(
            text.contains(name) && text.contains(&format!("\"{value}\"")),
            "{text}"
        );
        assert!(
            matches!(&e, ConfigError::Invalid { name: n, .. } if n == name),
            "{e:?}"
        );
    }
}

#[test]
fn malformed_values_are_errors_not_defaults() {
    for (name, value) in [
        ("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "ninety"),
        ("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "-1"),
        ("ORCHESTRATOR_SECURE_WEBSOCKET", "maybe"),
        ("BANNOU_HEARTBEAT_ENABLED", "2"),
        ("ORCHESTRATOR_LISTEN", "localhost"),
        ("ORCHESTRATOR_POOL_AUTOSCALE", "sometimes"),
        ("ORCHESTRATOR_POOL_AUTOSCALE_INTERVAL_SECONDS", "0"),
        ("ORCHESTRATOR_DOCKER_IMAGE_NAME", "  "),
        ("ORCHESTRATOR_DOCKER_NETWORK", ""),
        ("ORCHESTRATOR_KUBERNETES_NAMESPACE", ""),
        ("ORCHESTRATOR_OPENRESTY_HOST", ""),
    ] {
        let text = error_of(name, value).to_string();
        assert!(text.starts_with(name), "{text}");
    }
}

#[test]
fn backend_accepts_every_spelling_and_rejects_unknown_ones() {
    for (value, expected) in [
        ("compose", BackendType::Compose),
        ("Compose", BackendType::Compose),
        ("kubernetes", BackendType::Kubernetes),
        ("KUBERNETES", BackendType::Kubernetes),
        ("portainer", BackendType::Portainer),
        ("swarm", BackendType::Swarm),
        ("in-process", BackendType::InProcess),
        ("InProcess", BackendType::InProcess),
    ] {
        let c = config(&[("ORCHESTRATOR_DEFAULT_BACKEND", value)]).unwrap();
        assert_eq!(c.default_backend, expected, "{value}");
    }
    let text = error_of("ORCHESTRATOR_DEFAULT_BACKEND", "nomad").to_string();
    assert!(
        text.contains("ORCHESTRATOR_DEFAULT_BACKEND") && text.contains("nomad"),
        "{text}"
    );
    assert!(
        text.contains("kubernetes, portainer, swarm, compose"),
        "{text}"
    );
}

#[test]
fn exposure_without_token_and_foreign_app_ids_are_refused() {
    let c = config(&[("ORCHESTRATOR_LISTEN", "0.0.0.0:8080")]).unwrap();
    let e = c.check_exposure().unwrap_err();
    assert!(e.to_string().contains("ORCHESTRATOR_API_TOKEN"), "{e}");
    assert!(
        config(&[("ORCHESTRATOR_LISTEN", "[::1]:8080")])
            .unwrap()
            .check_exposure()
            .is_ok()
    );
    let c = config(&[("BANNOU_APP_ID", "orchestrator")]).unwrap();
    let e = c.check_app_id().unwrap_err();
    assert!(e.to_string().contains("`orchestrator`"), "{e}");
}

#[test]
fn an_openresty_host_that_is_no_host_name_is_a_start_up_error() {
    for bad in ["http://edge", "edge host", "edge/cache"] {
        let e = error_of("ORCHESTRATOR_OPENRESTY_HOST", bad);
        assert!(
            matches!(&e, ConfigError::Invalid { name, value, .. }
                if name == "ORCHESTRATOR_OPENRESTY_HOST" && value == bad),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(bad) && text.contains("not a host name"),
            "{text}"
        );
    }
    let c = config(&[("ORCHESTRATOR_OPENRESTY_HOST", "edge.internal")]).unwrap();
    assert_eq!(c.openresty().unwrap().host(), "edge.internal");
    // A configuration changed after reading is checked again.
    let mut changed = c.clone();
    changed.openresty_host = "a b".to_owned();
    assert!(changed.checked_openresty().is_err());
    assert!(changed.openresty().is_none());
}

#[test]
fn nodes_mount_the_logs_volume_and_the_certificates_directory() {
    let c = config(&[]).unwrap();
    let none = c.node_mounts_with(|_| false);
    assert_eq!(none.logs_volume.as_deref(), Some("logs-data"));
    assert_eq!(
        none.certificates_host_path, None,
        "upstream's default directory is absent here: nothing mounted"
    );
    assert!(!none.certificates_mounted());
    let default = c.node_mounts_with(|p| p == Path::new(DEFAULT_CERTIFICATES_HOST_PATH));
    assert_eq!(
        default.certificates_host_path.as_deref(),
        Some(Path::new(DEFAULT_CERTIFICATES_HOST_PATH)),
        "upstream's default directory is mounted when it exists"
    );
    assert_eq!(default.presets_host_path, None, "presets are not mounted");

    let c = config(&[
        ("ORCHESTRATOR_LOGS_VOLUME", "game-logs"),
        ("ORCHESTRATOR_CERTIFICATES_HOST_PATH", "/srv/certs"),
    ])
    .unwrap();
    let set = c.node_mounts_with(|_| false);
    assert_eq!(set.logs_volume.as_deref(), Some("game-logs"));
    assert_eq!(
        set.certificates_host_path.as_deref(),
        Some(Path::new("/srv/certs")),
        "a configured path is used as given"
    );
    let relative = config(&[("ORCHESTRATOR_CERTIFICATES_HOST_PATH", "certs")])
        .unwrap()
        .node_mounts_with(|_| false);
    let path = relative.certificates_host_path.unwrap();
    assert!(path.is_absolute() && path.ends_with("certs"), "{path:?}");
    assert!(
        error_of("ORCHESTRATOR_LOGS_VOLUME", " ")
            .to_string()
            .contains("empty")
    );
}

#[test]
fn set_variables_without_effect_are_listed_and_unset_ones_are_not() {
    assert!(config(&[]).unwrap().no_effect.is_empty());
    assert_eq!(no_effect_line(&[]), None);
    let c = config(&[
        ("ORCHESTRATOR_POOL_LOCK_TIMEOUT_SECONDS", "20"),
        ("ORCHESTRATOR_SECURE_WEBSOCKET", "false"),
        ("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "30"),
    ])
    .unwrap();
    let names: Vec<&str> = c.no_effect.iter().map(|v| v.name).collect();
    assert_eq!(
        names,
        vec![
            "ORCHESTRATOR_SECURE_WEBSOCKET",
            "ORCHESTRATOR_POOL_LOCK_TIMEOUT_SECONDS"
        ],
        "in table order, only those set and without effect"
    );
    let every: Vec<(&str, &str)> = NO_EFFECT.iter().map(|v| (v.name, "1")).collect();
    assert_eq!(config(&every).unwrap().no_effect, NO_EFFECT.to_vec());
    let line = no_effect_line(&c.no_effect).unwrap();
    assert!(line.contains("no effect"), "{line}");
    for v in &c.no_effect {
        assert!(line.contains(v.name) && line.contains(v.why), "{line}");
    }
}

/// What `log_no_effect` writes under a subscriber capturing the output.
fn logged_at_start(c: &HostConfig) -> String {
    use std::sync::{Arc, Mutex};
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || c.log_no_effect());
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn the_host_logs_one_line_for_variables_without_effect_only_when_set() {
    let c = config(&[
        ("ORCHESTRATOR_INDEX_UPDATE_MAX_RETRIES", "5"),
        ("ORCHESTRATOR_HEARTBEAT_TTL_SECONDS", "60"),
    ])
    .unwrap();
    let logged = logged_at_start(&c);
    assert_eq!(logged.lines().count(), 1, "{logged}");
    assert!(logged.contains("WARN"), "{logged}");
    assert!(
        logged.contains("ORCHESTRATOR_INDEX_UPDATE_MAX_RETRIES")
            && logged.contains("ORCHESTRATOR_HEARTBEAT_TTL_SECONDS")
            && logged.contains("accepted for compatibility"),
        "{logged}"
    );
    let quiet = config(&[("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "30")]).unwrap();
    assert_eq!(logged_at_start(&quiet), "", "nothing set without effect");
}

#[test]
fn durations_take_their_plain_unit_or_a_humantime_form() {
    let c = config(&[
        ("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "2m 30s"),
        ("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", " 45 "),
        ("ORCHESTRATOR_DEGRADATION_THRESHOLD_MINUTES", "90s"),
        ("ORCHESTRATOR_HEALTH_CHECK_INTERVAL_MS", "1s"),
        ("ORCHESTRATOR_CONFIG_HISTORY_TTL_DAYS", "2"),
        ("ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS", "250"),
        ("ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS", "0s"),
        ("ORCHESTRATOR_POOL_AUTOSCALE_INTERVAL_SECONDS", "1m"),
    ])
    .unwrap();
    assert_eq!(c.wave_timeout, Duration::from_secs(150));
    assert_eq!(
        c.heartbeat_timeout,
        Duration::from_secs(45),
        "plain seconds"
    );
    assert_eq!(c.degradation_threshold, Duration::from_secs(90));
    assert_eq!(c.health_check_interval, Duration::from_secs(1));
    assert_eq!(c.config_history_ttl, Duration::from_secs(2 * 86_400));
    assert_eq!(c.redis_wait_timeout, Duration::from_millis(250), "plain ms");
    assert_eq!(c.reconcile_interval, Duration::ZERO);
    assert_eq!(c.scaler.interval, Duration::from_secs(60));
    assert_eq!(c.scaler_config().interval, Duration::from_secs(60));
}

#[test]
fn a_bad_duration_names_its_variable_and_the_bound_it_breaks() {
    for (name, value, why) in [
        (
            "ORCHESTRATOR_WAVE_TIMEOUT_SECONDS",
            "ten",
            "duration such as",
        ),
        (
            "ORCHESTRATOR_WAVE_TIMEOUT_SECONDS",
            "10 parsecs",
            "duration such as",
        ),
        ("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "500ms", "at least 1s"),
        (
            "ORCHESTRATOR_HEALTH_CHECK_INTERVAL_MS",
            "50ms",
            "at least 100ms",
        ),
        ("ORCHESTRATOR_LEADER_LEASE_SECONDS", "1500ms", "at least 2s"),
        ("ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS", "2m", "at most 1m"),
        ("ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS", "60001", "at most 1m"),
        (
            "ORCHESTRATOR_LEASE_CLEANUP_INTERVAL_SECONDS",
            "5s",
            "at least 10s",
        ),
        (
            "ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS",
            "99999999999",
            "at most",
        ),
    ] {
        let e = error_of(name, value);
        assert!(
            matches!(&e, ConfigError::Invalid { name: n, value: v, .. } if n == name && v == value),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.starts_with(name) && text.contains(why), "{text}");
    }
    let text = error_of("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", "x").to_string();
    assert!(text.contains("whole number of seconds"), "{text}");
    let text = error_of("ORCHESTRATOR_CONFIG_HISTORY_TTL_DAYS", "x").to_string();
    assert!(text.contains("whole number of days"), "{text}");
}

#[test]
fn the_pool_scaler_is_read_by_the_one_reader() {
    let c = config(&[]).unwrap();
    let s = c.scaler_config();
    assert!(s.autoscale);
    assert_eq!(s.default_image, vars::DOCKER_IMAGE_NAME.default);
    assert_eq!(s.interval, vars::POOL_AUTOSCALE_INTERVAL.default);
    let c = config(&[
        ("ORCHESTRATOR_POOL_AUTOSCALE", "FALSE"),
        ("ORCHESTRATOR_DOCKER_IMAGE_NAME", "reg/bannou:9"),
        ("ORCHESTRATOR_POOL_AUTOSCALE_INTERVAL_SECONDS", "2"),
        ("ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS", "45"),
    ])
    .unwrap();
    assert_eq!(s.drain_timeout, vars::POOL_DRAIN_TIMEOUT.default);
    assert_eq!(c.scaler.drain_timeout, Duration::from_secs(45));
    assert!(!c.scaler.autoscale);
    assert_eq!(c.scaler.default_image, "reg/bannou:9");
    assert_eq!(c.scaler.interval, Duration::from_secs(2));
    let e = error_of("ORCHESTRATOR_POOL_AUTOSCALE", "maybe");
    assert_eq!(
        e.to_string(),
        "ORCHESTRATOR_POOL_AUTOSCALE=\"maybe\": expected true or false"
    );
}

#[test]
fn every_default_reads_back_from_its_plain_form() {
    // A default written the way upstream's variables take it parses to itself, within
    // its own bounds: a table entry whose default breaks its min fails here.
    for s in [
        vars::HEARTBEAT_TIMEOUT,
        vars::DEGRADATION_THRESHOLD,
        vars::PORTAINER_REQUEST_TIMEOUT,
        vars::OPENRESTY_REQUEST_TIMEOUT,
        vars::HEARTBEAT_TTL,
        vars::ROUTING_TTL,
        vars::CONFIG_HISTORY_TTL,
        vars::RESTART_TIMEOUT,
        vars::HEALTH_CHECK_INTERVAL,
        vars::DEFAULT_WAIT_BEFORE_KILL,
        vars::CONTAINER_STATUS_POLL_INTERVAL,
        vars::FULL_MAPPINGS_INTERVAL,
        vars::ORPHAN_CONTAINER_THRESHOLD,
        vars::DEFAULT_POOL_LEASE_TIMEOUT,
        vars::POOL_LOCK_TIMEOUT,
        vars::LEASE_CLEANUP_INTERVAL,
        vars::REDIS_WAIT_TIMEOUT,
        vars::HEARTBEAT_INTERVAL,
        vars::WAVE_TIMEOUT,
        vars::ROUTING_ACK_TIMEOUT,
        vars::POOL_AUTOSCALE_INTERVAL,
        vars::POOL_DRAIN_TIMEOUT,
        vars::LEADER_LEASE,
        vars::RECONCILE_INTERVAL,
        vars::RECONCILE_GRACE,
    ] {
        let units = s.default.as_nanos() / s.unit.as_nanos();
        assert_eq!(s.parse(&units.to_string()), Ok(s.default), "{}", s.name);
        let human = humantime::format_duration(s.default).to_string();
        assert_eq!(s.parse(&human), Ok(s.default), "{} {human}", s.name);
    }
}

#[test]
fn blank_nullable_values_mean_unset() {
    let c = config(&[
        ("ORCHESTRATOR_REDIS_CONNECTION_STRING", " "),
        ("ORCHESTRATOR_API_TOKEN", ""),
        ("ORCHESTRATOR_PORTAINER_URL", ""),
        ("BANNOU_APP_ID", ""),
    ])
    .unwrap();
    assert_eq!(c.redis_url, None);
    assert!(c.api_token.is_none());
    assert!(c.portainer_url.is_none());
    assert_eq!(c.app_id, AppId::control_plane());
    assert_eq!(
        normalize_redis_url("redis://127.0.0.1:1/"),
        "redis://127.0.0.1:1/"
    );
}
