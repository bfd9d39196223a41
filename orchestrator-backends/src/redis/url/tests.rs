//! Unit tests of `redis::url`.

use super::*;

fn parse(s: &str) -> RedisUrl {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn every_form_parses() {
    let u = parse("redis://127.0.0.1:6380/2");
    assert_eq!(u.topology, Topology::Single);
    assert_eq!(
        (u.hosts.clone(), u.db, u.tls),
        (vec![("127.0.0.1".into(), 6380)], 2, false)
    );
    let u = parse("rediss://app:s3cr%40t@cache.example:6390");
    assert!(u.tls);
    assert_eq!(u.username.as_deref(), Some("app"));
    assert_eq!(u.password(), Some("s3cr@t"));
    let u = parse("redis+sentinel://u:p@10.0.0.1:26379,10.0.0.2/mymaster?tls=true");
    assert_eq!(
        u.topology,
        Topology::Sentinel {
            master: "mymaster".into()
        }
    );
    assert!(u.tls);
    assert_eq!(u.hosts[1], ("10.0.0.2".into(), DEFAULT_SENTINEL_PORT));
    let u = parse("redis+cluster://a:7000,b:7001,[::1]:7002");
    assert_eq!(u.topology, Topology::Cluster);
    assert_eq!(u.hosts[2], ("::1".into(), 7002));
    assert!(parse("rediss+cluster://a:1").tls);
    assert_eq!(parse("redis://h").hosts, vec![("h".into(), DEFAULT_PORT)]);
}

#[test]
fn expose_round_trips() {
    for s in [
        "redis://127.0.0.1:6380/2",
        "rediss://app:s3cr%40t@cache.example:6390/0",
        "redis+sentinel://u:p@10.0.0.1:26379,10.0.0.2:26379/mymaster?tls=true",
        "redis+cluster://a:7000,b:7001,[::1]:7002",
        "redis://:only-pass@h:1/0",
        "redis+sentinel://u:p@s:26379/m?tls=true&sentinel_user=watch&sentinel_password=a%26b%3Dc",
        "redis+sentinel://s:26379/m/3?sentinel_password=x",
    ] {
        assert_eq!(parse(s).expose(), s);
        assert_eq!(parse(&parse(s).expose()), parse(s));
    }
}

#[test]
fn errors_name_the_wrong_part() {
    let err = |s: &str| s.parse::<RedisUrl>().unwrap_err().to_string();
    assert!(
        err("http://h:1").contains("scheme `http`"),
        "{}",
        err("http://h:1")
    );
    assert!(err("redis://h:99999").contains("port `99999`"));
    assert!(err("redis://:1").contains("host is empty"));
    assert!(err("redis://h:1/x").contains("path `x`: not a database number"));
    assert!(err("redis+sentinel://h:1").contains("master's name is missing"));
    assert!(err("redis+cluster://h:1/3").contains("database 0 only"));
    assert!(err("redis://a:1,b:2").contains("several hosts"));
    assert!(err("redis+sentinel://h/m?tls=maybe").contains("query `tls=maybe`"));
    assert!(err("redis+sentinel://h/m?x=1").contains("unknown parameter"));
    assert!(err("redis://h/0?sentinel_user=u").contains("redis+sentinel:// only"));
    assert!(err("redis+sentinel://h/m?sentinel_password=%FF").contains("not UTF-8"));
}

#[test]
fn sentinel_credentials_come_from_the_query_and_reach_only_the_sentinel_url() {
    let u =
        parse("redis+sentinel://app:data@s1:26379/m?sentinel_user=watch&sentinel_password=p%40ss");
    assert_eq!(u.sentinel_username.as_deref(), Some("watch"));
    assert_eq!(u.sentinel_password(), Some("p@ss"));
    assert_eq!(u.password(), Some("data"));
    assert_eq!(
        u.sentinel_url("s1", 26379),
        "redis://watch:p%40ss@s1:26379/"
    );
    assert_eq!(
        u.server_url("10.0.0.9", 6379),
        "redis://app:data@10.0.0.9:6379/0"
    );
    let only_pass = parse("redis+sentinel://s1/m?sentinel_password=x&tls=true");
    assert_eq!(only_pass.sentinel_url("::1", 1), "rediss://:x@[::1]:1/");
    assert_eq!(
        parse("redis+sentinel://s1/m").sentinel_url("s1", 2),
        "redis://s1:2/"
    );
    // An empty value is no credential.
    assert_eq!(
        parse("redis+sentinel://s1/m?sentinel_password=").sentinel_password(),
        None
    );
}

#[test]
fn no_password_in_display_debug_or_errors() {
    let secret = "hunter2-secret";
    let url = parse(&format!("rediss://app:{secret}@h:1/0"));
    assert_eq!(url.to_string(), "rediss://app:***@h:1/0");
    assert!(!format!("{url:?}").contains(secret));
    assert!(url.expose().contains(secret));
    for bad in [
        format!("redis://app:{secret}@h:99999"),
        format!("redis://app:{secret}@h:1/nope"),
        format!("ftp://app:{secret}@h:1"),
        format!("redis+sentinel://app:{secret}@h:1"),
        format!("redis://app:{secret}@h:1/0?x=y"),
    ] {
        let e = bad.parse::<RedisUrl>().unwrap_err();
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
    assert_eq!(redact(&format!("redis://u:{secret}@h")), "redis://u:***@h");
    assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");

    let sentinel = parse(&format!(
        "redis+sentinel://app:{secret}@s:1/m?sentinel_user=w&sentinel_password={secret}"
    ));
    assert_eq!(
        sentinel.to_string(),
        "redis+sentinel://app:***@s:1/m?sentinel_user=w&sentinel_password=***"
    );
    assert!(!format!("{sentinel:?}").contains(secret));
    assert!(
        sentinel
            .expose()
            .contains(&format!("sentinel_password={secret}"))
    );
    for bad in [
        format!("redis+sentinel://s:1/m?sentinel_password={secret}&x=y"),
        format!("redis+sentinel://s:99999/m?sentinel_password={secret}"),
        format!("redis+sentinel://s:1/m?tls=maybe&sentinel_password={secret}"),
        format!("redis://s:1/0?sentinel_password={secret}"),
    ] {
        let e = bad.parse::<RedisUrl>().unwrap_err();
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
    assert_eq!(
        redact(&format!(
            "redis+sentinel://s/m?tls=true&sentinel_password={secret}"
        )),
        "redis+sentinel://s/m?tls=true&sentinel_password=***"
    );
}

#[test]
fn hash_tags_are_recognised() {
    assert!(has_hash_tag("{orch}:hb:x"));
    assert!(has_hash_tag("orch:pool:{P}:"));
    assert!(!has_hash_tag("orch"));
    assert!(!has_hash_tag("a{}b"));
    assert!(!has_hash_tag("a}{"));
}

#[test]
fn node_url_swaps_loopback_hosts_only() {
    let gw = Some("172.17.0.1".parse().unwrap());
    let u = parse("rediss://u:p@127.0.0.1:6380/1");
    assert_eq!(u.node_url(gw).unwrap(), "rediss://u:p@172.17.0.1:6380/1");
    assert_eq!(u.node_url(None), None);
    let c = parse("redis+cluster://10.0.0.1:7000,localhost:7001");
    assert_eq!(
        c.node_url(gw).unwrap(),
        "redis+cluster://10.0.0.1:7000,172.17.0.1:7001"
    );
    assert_eq!(
        parse("redis+sentinel://s:26379/m").server_url("10.0.0.9", 6379),
        "redis://10.0.0.9:6379/0"
    );
}
