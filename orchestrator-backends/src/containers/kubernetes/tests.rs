//! Unit tests of `containers::kubernetes`.

use super::*;

#[test]
fn api_errors_name_the_object_and_status() {
    let status = kube::core::Status::failure("etcd is down", "InternalError").with_code(500);
    let what = What {
        action: "apply",
        kind: "Deployment",
        namespace: "ns",
        name: "bannou-a-b",
    };
    let e = map_kube(
        kube::Error::Api(Box::new(status)),
        &what,
        Some(&AppId::from("b")),
    );
    assert_eq!(
        e.to_string(),
        "runtime error: Kubernetes API refused to apply Deployment ns/bannou-a-b: \
         HTTP 500 InternalError: etcd is down"
    );
    let cause = std::error::Error::source(&e).expect("the client's error is kept");
    assert!(
        matches!(cause.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 500),
        "{cause:?}"
    );
    let conflict = kube::core::Status::failure("taken", "Conflict").with_code(409);
    let e = map_kube(
        kube::Error::Api(Box::new(conflict)),
        &what,
        Some(&AppId::from("b")),
    );
    assert!(matches!(e, BackendError::Conflict { .. }), "{e:?}");
    let missing = kube::core::Status::failure("gone", "NotFound").with_code(404);
    let e = map_kube(
        kube::Error::Api(Box::new(missing)),
        &what,
        Some(&AppId::from("b")),
    );
    assert_eq!(
        e,
        BackendError::NotFound {
            app_id: AppId::from("b")
        }
    );
}

#[test]
fn detection_is_presence_only() {
    let root = std::env::temp_dir().join(format!("bannou-k8s-detect-{}", std::process::id()));
    let sa = root.join("sa");
    let home = root.join("home");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    let none = detect_credentials_in(&sa, None, Some(&home));
    assert_eq!(none, Err("No Kubernetes credentials found".to_owned()));
    std::fs::write(home.join(".kube/config"), "x").unwrap();
    assert_eq!(
        detect_credentials_in(&sa, None, Some(&home)),
        Ok(home.join(".kube/config").display().to_string())
    );
    let explicit = root.join("kc");
    assert!(detect_credentials_in(&sa, Some(&explicit), Some(&home)).is_err());
    std::fs::write(&explicit, "x").unwrap();
    assert_eq!(
        detect_credentials_in(&sa, Some(&explicit), Some(&home)),
        Ok(explicit.display().to_string())
    );
    std::fs::write(sa.join("token"), "t").unwrap();
    std::fs::write(sa.join("ca.crt"), "c").unwrap();
    assert_eq!(
        detect_credentials_in(&sa, None, None),
        Ok("in-cluster".to_owned())
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn defaults_follow_spec_19() {
    let c = KubernetesConfig::default();
    assert_eq!(c.namespace, "default");
    assert_eq!(c.node_port, 80);
    assert_eq!(c.field_manager, "bannou-orchestrator");
    assert!(c.deploy_wait.is_none());
    assert_eq!(secs(Duration::from_millis(1500)), 2);
}
