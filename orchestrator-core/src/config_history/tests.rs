//! Unit tests of `config_history`.

use super::*;
use crate::records::ServiceDeploymentConfig;
use proptest::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + secs * 1000)
}

fn svc(enabled: bool) -> ServiceDeploymentConfig {
    ServiceDeploymentConfig {
        enabled,
        app_id: None,
        replicas: 1,
        settings: BTreeMap::new(),
    }
}

/// A configuration with the given services (name, enabled) and env vars.
fn cfg(services: &[(&str, bool)], env: &[(&str, &str)]) -> DeploymentConfiguration {
    let mut c = DeploymentConfiguration::empty(Timestamp::UNIX_EPOCH);
    c.preset_name = Some("test".into());
    for (n, e) in services {
        c.services.insert((*n).into(), svc(*e));
    }
    for (k, v) in env {
        c.environment_variables.insert((*k).into(), (*v).into());
    }
    c
}

/// History with v1..v5, each with a distinct env marker `V={n}`.
fn five() -> ConfigHistory {
    let mut h = ConfigHistory::new();
    for n in 1..=5 {
        let v = n.to_string();
        h.save(cfg(&[("auth", n % 2 == 1)], &[("V", &v)]), t(n));
    }
    h
}

#[test]
fn save_assigns_consecutive_versions_and_timestamps() {
    let mut h = ConfigHistory::new();
    assert_eq!(h.latest_version(), 0);
    assert!(h.current().is_none());
    let mut c = cfg(&[], &[]);
    c.version = 42;
    c.stable = true;
    assert_eq!(h.save(c.clone(), t(1)), 1);
    assert_eq!(h.save(c, t(2)), 2);
    let cur = h.current().unwrap();
    assert_eq!((cur.version, cur.timestamp, cur.stable), (2, t(2), false));
    assert_eq!(h.get(1).unwrap().timestamp, t(1));
    assert!(h.get(3).is_none());
    assert!(h.get(0).is_none());
}

#[test]
fn history_is_newest_first_and_limited() {
    let h = five();
    let v: Vec<u64> = h.history(3).iter().map(|c| c.version).collect();
    assert_eq!(v, [5, 4, 3]);
    assert_eq!(h.history(100).len(), 5);
    assert!(h.history(0).is_empty());
}

#[test]
fn rollback_v5_to_v3_creates_v6_copy_and_keeps_history() {
    let mut h = five();
    let before: Vec<DeploymentConfiguration> = (1..=5).map(|v| h.get(v).unwrap().clone()).collect();
    let out = h.rollback(Some(3), t(100)).unwrap();
    assert_eq!(out.previous_version, 5);
    assert_eq!(out.current_version, 6);
    let v6 = h.current().unwrap();
    assert_eq!(v6.version, 6);
    assert_eq!(v6.timestamp, t(100));
    assert_eq!(
        v6.description.as_deref(),
        Some("Rolled back from version 5 to version 3")
    );
    let mut expected = before[2].clone();
    expected.version = 6;
    expected.timestamp = t(100);
    expected.description = v6.description.clone();
    assert_eq!(v6, &expected);
    assert_eq!(&out.restored, v6);
    for (i, b) in before.iter().enumerate() {
        assert_eq!(h.get(i as u64 + 1), Some(b), "version {} changed", i + 1);
    }
    assert_eq!(h.latest_version(), 6);
    // v3 has auth enabled, v5 too; only V differs.
    assert_eq!(out.changed_keys, ["env.V"]);
}

#[test]
fn rollback_defaults_to_previous_version() {
    let mut h = five();
    let out = h.rollback(None, t(100)).unwrap();
    assert_eq!((out.previous_version, out.current_version), (5, 6));
    assert_eq!(
        out.restored.description.as_deref(),
        Some("Rolled back from version 5 to version 4")
    );
    assert_eq!(out.restored.environment_variables["V"], "4");
    assert_eq!(out.changed_keys, ["services.auth.enabled", "env.V"]);
}

#[test]
fn rollback_rejects_when_nothing_to_roll_back() {
    let mut h = ConfigHistory::new();
    let e = h.rollback(None, t(1)).unwrap_err();
    assert_eq!(e, RollbackError::NothingToRollBack { current: 0 });
    h.save(cfg(&[], &[]), t(1));
    let e = h.rollback(Some(1), t(2)).unwrap_err();
    assert_eq!(e, RollbackError::NothingToRollBack { current: 1 });
    assert_eq!(h.latest_version(), 1);
}

#[test]
fn rollback_rejects_invalid_targets() {
    let mut h = five();
    for target in [0, 5, 6, 99] {
        let e = h.rollback(Some(target), t(9)).unwrap_err();
        assert_eq!(e, RollbackError::InvalidTarget { target, current: 5 });
    }
    assert_eq!(h.latest_version(), 5);
}

#[test]
fn rollback_to_expired_version_is_not_found() {
    let mut h = five();
    // v1..v4 saved at t(1..4); prune them all (current v5 stays).
    let removed = h.prune(t(4) + DAY, DAY);
    assert_eq!(removed, [1, 2, 3, 4]);
    let e = h.rollback(Some(2), t(5) + DAY).unwrap_err();
    assert_eq!(e, RollbackError::NotFound { version: 2 });
    assert_eq!(h.latest_version(), 5);
    assert_eq!(h.current().unwrap().version, 5);
}

#[test]
fn rollback_changed_keys_are_one_directional() {
    let restored = cfg(
        &[("auth", true), ("accounts", true), ("mesh", false)],
        &[("A_X", "1"), ("B", "2"), ("C", "3")],
    );
    let previous = cfg(
        &[("auth", true), ("accounts", false), ("gone", true)],
        &[("A_X", "1"), ("B", "changed"), ("ONLY_PREV", "x")],
    );
    assert_eq!(
        rollback_changed_keys(&restored, &previous),
        [
            "services.accounts.enabled",
            "services.mesh.enabled",
            "env.B",
            "env.C"
        ]
    );
}

#[test]
fn symmetric_changed_keys_cover_both_directions() {
    let mut a = cfg(
        &[("auth", true), ("accounts", true)],
        &[("A", "1"), ("B", "2")],
    );
    let mut b = cfg(&[("auth", true), ("gone", true)], &[("A", "1"), ("C", "3")]);
    a.services.get_mut("auth").unwrap().app_id = Some("node-a".into());
    a.services
        .get_mut("auth")
        .unwrap()
        .settings
        .insert("k".into(), "v".into());
    b.services.get_mut("auth").unwrap().replicas = 2;
    let expected = [
        "env.B",
        "env.C",
        "services.accounts.enabled",
        "services.auth.appId",
        "services.auth.replicas",
        "services.auth.settings.k",
        "services.gone.enabled",
    ];
    assert_eq!(changed_keys(&a, &b), expected);
    assert_eq!(changed_keys(&b, &a), expected);
    assert!(changed_keys(&a, &a).is_empty());
}

#[test]
fn rollback_without_current_reports_no_changed_keys() {
    let plan = RollbackPlan::new(3, None).unwrap();
    let restored = plan.restore(Some(cfg(&[("a", true)], &[])), t(1)).unwrap();
    assert!(plan.outcome(restored, None).changed_keys.is_empty());
}

#[test]
fn clear_saves_default_preset_and_keeps_history() {
    let mut h = five();
    assert_eq!(h.clear(t(50)), 6);
    let c = h.current().unwrap();
    assert_eq!(c.preset_name.as_deref(), Some("default"));
    assert_eq!(
        c.description.as_deref(),
        Some("Reset to default topology - all services route to 'bannou'")
    );
    assert!(c.services.is_empty() && c.environment_variables.is_empty());
    assert_eq!(c.timestamp, t(50));
    assert_eq!(h.history(100).len(), 6);
}

#[test]
fn version_info_follows_spec_11_3() {
    let mut h = ConfigHistory::new();
    let info = h.version_info(t(7));
    assert_eq!(
        info,
        ConfigVersionInfo {
            version: 0,
            timestamp: t(7),
            has_previous_config: false,
            key_count: 0,
            key_prefixes: vec![],
        }
    );
    h.save(
        cfg(
            &[("auth", true), ("mesh", false)],
            &[
                ("AUTH_A", "1"),
                ("AUTH_B", "1"),
                ("BANNOU", "x"),
                ("X_Y_Z", "1"),
            ],
        ),
        t(1),
    );
    let info = h.version_info(t(7));
    assert_eq!(info.version, 1);
    assert_eq!(info.timestamp, t(1));
    assert!(!info.has_previous_config);
    assert_eq!(info.key_count, 6);
    assert_eq!(
        info.key_prefixes,
        ["services", "env.AUTH", "env.BANNOU", "env.X"]
    );
    h.save(cfg(&[], &[]), t(2));
    let info = h.version_info(t(7));
    assert!(info.has_previous_config);
    assert!(info.key_prefixes.is_empty());
    h.prune(t(1) + DAY, DAY);
    assert!(!h.version_info(t(7)).has_previous_config);
}

#[test]
fn version_info_caps_prefixes_at_ten() {
    let keys: Vec<String> = (0..15).map(|i| format!("P{i:02}_K")).collect();
    let env: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    let mut h = ConfigHistory::new();
    h.save(cfg(&[("auth", true)], &env), t(1));
    let info = h.version_info(t(1));
    assert_eq!(info.key_prefixes.len(), MAX_KEY_PREFIXES);
    assert_eq!(info.key_prefixes[0], "services");
    assert_eq!(info.key_prefixes[9], "env.P08");
    assert_eq!(info.key_count, 16);
}

#[test]
fn stable_marks_track_the_highest_stable_version() {
    let mut h = five();
    assert!(h.last_stable().is_none());
    assert_eq!(h.mark_stable(9), Err(VersionNotFound { version: 9 }));
    h.mark_stable(3).unwrap();
    assert!(h.get(3).unwrap().stable);
    assert_eq!(h.last_stable().unwrap().version, 3);
    h.mark_stable(5).unwrap();
    assert!(h.current().unwrap().stable);
    assert!(h.history(1)[0].stable);
    // A late mark of an older version does not replace a newer stable one.
    h.mark_stable(4).unwrap();
    assert_eq!(h.last_stable().unwrap().version, 5);
    // Rolling back to a stable version yields an unproven copy.
    let out = h.rollback(Some(3), t(9)).unwrap();
    assert!(!out.restored.stable);
    assert_eq!(h.last_stable().unwrap().version, 5);
    // The stable copy survives pruning of its history entry.
    h.save(cfg(&[], &[]), t(10));
    h.prune(t(10) + DAY, DAY);
    assert!(h.get(5).is_none());
    assert_eq!(h.last_stable().unwrap().version, 5);
}

#[test]
fn prune_drops_old_entries_but_never_current() {
    let mut h = five();
    assert!(h.prune(t(5), DAY).is_empty());
    // Exactly at the TTL boundary an entry is expired (as a store TTL would be).
    assert_eq!(h.prune(t(2) + DAY, DAY), [1, 2]);
    assert_eq!(h.prune(t(1000) + DAY, DAY), [3, 4]);
    assert_eq!(h.history(10).len(), 1);
    assert_eq!(h.current().unwrap().version, 5);
    assert_eq!(h.get(5).unwrap().version, 5);
    // Versions keep counting after pruning.
    assert_eq!(h.save(cfg(&[], &[]), t(2000) + DAY), 6);
}

#[test]
fn max_versions_keeps_the_newest_entries() {
    let mut h = ConfigHistory::with_max_versions(NonZeroUsize::new(2).unwrap());
    for n in 1..=4 {
        h.save(cfg(&[], &[]), t(n));
    }
    let v: Vec<u64> = h.history(10).iter().map(|c| c.version).collect();
    assert_eq!(v, [4, 3]);
    assert!(h.get(2).is_none());
    let mut h = ConfigHistory::with_max_versions(NonZeroUsize::new(1).unwrap());
    h.save(cfg(&[], &[]), t(1));
    h.save(cfg(&[], &[]), t(2));
    assert_eq!(h.current().unwrap().version, 2);
    assert_eq!(
        h.rollback(None, t(3)),
        Err(RollbackError::NotFound { version: 1 })
    );
}

#[derive(Debug, Clone)]
enum Op {
    Save(u8),
    Rollback(Option<u64>),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4).prop_map(Op::Save),
        proptest::option::of(0u64..12).prop_map(Op::Rollback),
        Just(Op::Clear),
    ]
}

proptest! {
    #[test]
    fn versions_stay_consecutive_and_rollback_never_mutates(ops in proptest::collection::vec(op(), 0..30)) {
        let mut h = ConfigHistory::new();
        let mut seen: Vec<DeploymentConfiguration> = Vec::new();
        for (i, o) in ops.into_iter().enumerate() {
            let now = t(i as i64);
            let before = h.latest_version();
            match o {
                Op::Save(k) => {
                    let v = h.save(cfg(&[("auth", k % 2 == 0)], &[("K", &k.to_string())]), now);
                    prop_assert_eq!(v, before + 1);
                }
                Op::Clear => prop_assert_eq!(h.clear(now), before + 1),
                Op::Rollback(target) => match h.rollback(target, now) {
                    Ok(out) => {
                        prop_assert_eq!(out.current_version, before + 1);
                        let tv = target.unwrap_or(before - 1);
                        let mut copy = seen[(tv - 1) as usize].clone();
                        copy.version = before + 1;
                        copy.timestamp = now;
                        copy.description = out.restored.description.clone();
                        prop_assert_eq!(&out.restored, &copy);
                    }
                    Err(_) => prop_assert_eq!(h.latest_version(), before),
                },
            }
            if h.latest_version() > before {
                seen.push(h.current().unwrap().clone());
            }
            prop_assert_eq!(h.latest_version(), seen.len() as u64);
            for (idx, s) in seen.iter().enumerate() {
                prop_assert_eq!(s.version, idx as u64 + 1);
                prop_assert_eq!(h.get(idx as u64 + 1), Some(s));
            }
        }
    }
}
