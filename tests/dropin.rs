//! Drop-in configs: Hipache and Lopache config.json files load unchanged and
//! behave exactly like the TOML equivalent that `--dry` prints for them;
//! unimplemented keys are warned about once; errors name the JSON key.

mod harness;

use std::process::Command;

use harness::{request, Backend, HttpResponse, Lopache, Redis, TempDir};

fn lopache(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lopache"))
        .args(args)
        .output()
        .unwrap()
}

/// Starts lopache on `json`, and again on the TOML `--dry` prints for it.
fn both_forms(json: &str) -> (Lopache, Lopache, String) {
    let dir = TempDir::new("dropin");
    let json_path = dir.path().join("config.json");
    std::fs::write(&json_path, json).unwrap();
    let dry = lopache(&["--config", json_path.to_str().unwrap(), "--dry"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let toml = String::from_utf8(dry.stdout).unwrap();
    let from_json = Lopache::start_file(&json_path);
    let from_toml = Lopache::start_config(&toml, &[]);
    (from_json, from_toml, toml)
}

fn same(a: &HttpResponse, b: &HttpResponse) -> bool {
    a.status == b.status && a.body == b.body
}

fn ask(proxy: &Lopache, path: &str, cookie: &str) -> HttpResponse {
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    request(
        proxy.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n{cookie}Connection: close\r\n\r\n"),
    )
}

#[test]
fn hipache_fixture_config_behaves_like_its_toml_equivalent() {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend(
        "",
        "app.example",
        "app",
        &[app.url(), harness::backend::refused_url()],
    );
    let json = format!(
        r#"{{
    "server": {{"debug": false, "workers": 2, "maxSockets": 100, "deadBackendTTL": 30,
               "tcpTimeout": 5, "retryOnError": 3, "deadBackendOn500": true, "httpKeepAlive": false,
               "accessLog": "/tmp/hipache-test.log", "lruCache": false}},
    "http": {{"port": 0, "bind": ["127.0.0.1"]}},
    "https": {{"port": 0, "bind": [], "key": "hipache-key.pem", "cert": "hipache-crt.pem",
               "secureProtocol": "SSLv23_method", "ciphers": "ALL"}},
    "driver": "redis://127.0.0.1:{}",
    "user": "nobody", "group": "nogroup"
}}"#,
        redis.port
    );
    let (from_json, from_toml, toml) = both_forms(&json);
    assert!(
        toml.contains("retry_on_error = 3") && toml.contains("tcp_timeout = 5"),
        "{toml}"
    );
    for _ in 0..20 {
        let (a, b) = (ask(&from_json, "/", ""), ask(&from_toml, "/", ""));
        assert!(same(&a, &b) && a.status == 200, "{a:?} vs {b:?}");
    }
    let unknown = |p: &Lopache| {
        request(
            p.addr,
            "GET / HTTP/1.1\r\nHost: nope\r\nConnection: close\r\n\r\n",
        )
    };
    assert!(same(&unknown(&from_json), &unknown(&from_toml)));
    // Warnings reach the harness through a pipe: wait until the last is in.
    let log = harness::wait_for("the warnings", || {
        let log = from_json.stderr();
        log.contains("https.ciphers is not implemented")
            .then_some(log)
    });
    for key in ["server.lruCache", "https.ciphers"] {
        assert_eq!(
            log.matches(&format!("{key} is not implemented")).count(),
            1,
            "{key}:\n{log}"
        );
    }
    // A protocol floor below TLS 1.2 is translated to a preset, and said once.
    assert_eq!(
        log.matches("https.secureProtocol: \"SSLv23_method\" allows protocols below TLS 1.2")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn lopache_config_with_routes_behaves_like_its_toml_equivalent() {
    let redis = Redis::start();
    let old = Backend::named("old");
    let new = Backend::named("new");
    redis.frontend("", "app.example", "app", &[old.url()]);
    redis.frontend("rollout:", "app.example", "app", &[new.url()]);
    redis.cmd(&["SADD", "paths:app.example", "/api/*"]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let json = format!(
        r#"{{
    "server": {{"workers": 2, "retryOnError": 3, "staticDir": null, "accessLog": null}},
    "http": {{"port": 0, "bind": ["127.0.0.1"]}},
    "routes": [{{
        "condition": {{"and": {{"conditions": [
            {{"pathMatchesPattern": {{"driver": "{url}#paths:"}}}},
            {{"sessionIsIncludedInSegment": {{"cookie": "_myapp_session_id", "maxSegmentId": 50}}}}
        ]}}}},
        "destination": {{"randomBackendForHost": {{"driver": "{url}#rollout:"}}}}
    }}],
    "driver": "{url}"
}}"#
    );
    let (from_json, from_toml, _) = both_forms(&json);
    let ids: Vec<String> = (0..60).map(|i| format!("_myapp_session_id=s{i}")).collect();
    let mut sides = std::collections::HashSet::new();
    for path in ["/api/jobs", "/", "/other"] {
        for id in &ids {
            let (a, b) = (ask(&from_json, path, id), ask(&from_toml, path, id));
            assert!(same(&a, &b), "{path} {id}: {a:?} vs {b:?}");
            sides.insert((path, a.text()));
        }
    }
    // Both outcomes really happen: the rollout on /api/ for some sessions.
    assert!(
        sides.contains(&("/api/jobs", "new".to_string()))
            && sides.contains(&("/api/jobs", "old".to_string()))
    );
    assert!(!sides.contains(&("/other", "new".to_string())));
}

#[test]
fn earlier_rollout_block_is_a_segment_route() {
    let redis = Redis::start();
    let old = Backend::named("old");
    let new = Backend::named("new");
    redis.frontend("", "app.example", "app", &[old.url()]);
    redis.frontend("v2:", "app.example", "app", &[new.url()]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let json = format!(
        r#"{{"http": {{"port": 0, "bind": ["127.0.0.1"]}}, "driver": "{url}", "server": {{"accessLog": null}},
            "rollout": {{"cookie": "sid", "driver": "{url}#v2:", "maxSegmentId": 99}}}}"#
    );
    let (from_json, _, _) = both_forms(&json);
    assert_eq!(ask(&from_json, "/", "sid=anything").text(), "new");
    assert_eq!(ask(&from_json, "/", "").text(), "old");
}

#[test]
fn route_errors_exit_2_naming_the_key_in_both_formats() {
    let dir = TempDir::new("dropin");
    let route = |cond: &str, driver: &str| {
        format!(
            r#"{{"routes": [{{"condition": {cond}, "destination": {{"randomBackendForHost": {{"driver": "{driver}"}}}}}}]}}"#
        )
    };
    let json_cases = [
        (
            route(
                r#"{"and": {"conditions": [{"pathMatchesPatern": {}}]}}"#,
                "redis:",
            ),
            "routes[0].condition.and[0]: unknown condition \"pathMatchesPatern\"",
        ),
        (
            route(
                r#"{"includedInSegment": {"cookie": "c", "maxSegmentId": 120}}"#,
                "redis:",
            ),
            "routes[0].condition.includedInSegment.maxSegmentId: must be between 0 and 99",
        ),
        (
            route(r#"{"and": {"conditions": []}}"#, "redis:"),
            "routes[0].condition.and: needs at least one condition",
        ),
        (
            route(r#"{"pathPrefix": "/"}"#, "http://nope"),
            "routes[0].destination.randomBackendForHost.driver: ",
        ),
    ];
    let toml_route = |cond: &str, driver: &str| {
        format!("[[routes]]\ncondition = {cond}\ndestination = {{ random_backend_for_host = {{ driver = \"{driver}\" }} }}\n")
    };
    let toml_cases = [
        (
            toml_route("{ and = [ { path_matches_pattern = {} } ] }", "redis:"),
            "routes[0].condition.and[0]: unknown condition \"path_matches_pattern\"",
        ),
        (
            toml_route(
                "{ included_in_segment = { cookie = \"c\", max_segment_id = 120 } }",
                "redis:",
            ),
            "routes[0].condition.included_in_segment.max_segment_id: must be between 0 and 99",
        ),
        (
            toml_route("{ and = [] }", "redis:"),
            "routes[0].condition.and: needs at least one condition",
        ),
        (
            toml_route("{ path_prefix = \"/\" }", "http://nope"),
            "routes[0].destination.random_backend_for_host.driver: ",
        ),
    ];
    for (name, cases) in [("c.json", &json_cases), ("c.toml", &toml_cases)] {
        for (text, want) in cases.iter() {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let o = lopache(&["--config", path.to_str().unwrap(), "--dry"]);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{text}");
            assert!(stderr.contains(want), "{text}\nwant {want:?}\ngot {stderr}");
        }
    }
}

/// `--dry` on `json`: (exit code, stdout, stderr).
fn dry(dir: &TempDir, json: &str) -> (Option<i32>, String, String) {
    let path = dir.path().join("migrated.json");
    std::fs::write(&path, json).unwrap();
    let o = lopache(&["--config", path.to_str().unwrap(), "--dry"]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Keys that say where lopache connects or listens are translated, or the
/// start stops naming them; never warned about and dropped.
#[test]
fn migrated_configs_keep_where_they_connect_and_listen() {
    let dir = TempDir::new("migrate");
    let pki = harness::tls::Pki::new();
    pki.leaf(&["site.example"]).write(dir.path(), "site");
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    // Hipache 0.2: read replica, master for dead marks, and HTTPS on the
    // addresses of `server.address`/`address6` (not on every interface).
    let (code, out, err) = dry(
        &dir,
        &format!(
            r#"{{"server": {{"accessLog": null, "port": 8099, "address": ["127.0.0.2"],
                "address6": ["::1"], "https": {{"port": 8443, "key": {key:?}, "cert": {cert:?}}}}},
              "redisHost": "10.0.0.1", "redisPort": 6380, "redisDatabaseIndex": 2,
              "redisMasterHost": "10.0.0.2", "redisMasterPassword": "pw"}}"#
        ),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("\"redis://10.0.0.1:6380/2\",\n    \"redis://:***@10.0.0.2:6380/2\","),
        "{out}"
    );
    let https = out.split("[https]").nth(1).unwrap();
    assert!(
        https.contains("\"127.0.0.2\"") && https.contains("\"::1\""),
        "{https}"
    );
    assert!(!out.contains("0.0.0.0"), "{out}");
    // concussionjs-proxy.
    let (code, out, err) = dry(
        &dir,
        r#"{"server": {"accessLog": null}, "redis": {"host": "10.1.1.1", "port": 6390}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("driver = \"redis://10.1.1.1:6390/0\""),
        "{out}"
    );
    // hipache-raft's "the defaults", said aloud.
    let (code, out, err) = dry(
        &dir,
        r#"{"server": {"accessLog": null}, "driver": "redis://:"}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("driver = \"redis://127.0.0.1:6379/0\""),
        "{out}"
    );
    assert!(
        err.contains("names no host or port: using 127.0.0.1:6379"),
        "{err}"
    );
    // Node's TLS settings: a protocol floor becomes a preset; a passphrase
    // (an encrypted key) is an error saying what to do.
    let (code, out, err) = dry(
        &dir,
        r#"{"server": {"accessLog": null}, "https": {"bind": [], "secureProtocol": "TLSv1_3_method", "passphrase": ""}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("preset = \"modern\""), "{out}");
    // `ca` (intermediates sent after the certificate) is `https.chain`.
    let (code, out, err) = dry(
        &dir,
        r#"{"server": {"accessLog": null}, "https": {"bind": [], "ca": ["int1.pem", "int2.pem"]}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("chain = [\n    \"int1.pem\",\n    \"int2.pem\",\n]"),
        "{out}"
    );
    let (code, out, err) = dry(
        &dir,
        r#"{"server": {"accessLog": null}, "https": {"bind": [], "secureProtocol": "SSLv23_method"}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("preset = \"intermediate\""), "{out}");
    assert!(
        err.contains("below TLS 1.2, which lopache never offers"),
        "{err}"
    );
    let (code, _, err) = dry(
        &dir,
        r#"{"server": {"accessLog": null}, "https": {"bind": [], "passphrase": "secret"}}"#,
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("https.passphrase: encrypted private keys are not supported"),
        "{err}"
    );
    // Two answers to "which Redis": a config error naming the key.
    for json in [
        r#"{"driver": "redis://127.0.0.1:6379", "redisHost": "10.0.0.9"}"#,
        r#"{"driver": "redis://127.0.0.1:6379", "redis": {"host": "10.0.0.9"}}"#,
        r#"{"redis": {"host": "10.0.0.9", "socket": "/tmp/r.sock"}}"#,
    ] {
        let (code, _, err) = dry(&dir, json);
        assert_eq!(code, Some(2), "{json}");
        assert!(
            err.contains("redisHost: conflicts")
                || err.contains("redis: conflicts")
                || err.contains("redis.socket: not understood"),
            "{json}: {err}"
        );
    }
}

/// The sample configs of the projects lopache replaces (in the shape their
/// READMEs show, `tests/fixtures/migrate/`) pass `--dry`, with exactly the
/// warnings expected of each, as the README's Migrating tables say.
#[test]
fn sample_configs_of_each_source_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate");
    let expected: &[(&str, &[&str])] = &[
        ("hipache-0.2.json", &[]),
        ("hipache-0.3.json", &[]),
        ("lopache.json", &[]),
        ("concussionjs.json", &[]),
        (
            "hipache-raft.json",
            &["driver: \"redis://:\" names no host or port: using 127.0.0.1:6379"],
        ),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let want = expected
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name}: no expectation"))
            .1;
        let o = lopache(&["--config", path.to_str().unwrap(), "--dry"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warn:")).collect();
        assert_eq!(warnings.len(), want.len(), "{name}: {err}");
        for w in want {
            assert!(err.contains(w), "{name}: {err}");
        }
        seen += 1;
    }
    assert_eq!(seen, expected.len());
}
