//! Drop-in configs: a Hipache (0.3+, and the older `server.port` /
//! `server.https` / `redisHost` shapes) or Lopache `config.json`, read
//! unchanged and translated into the same raw config the TOML file gives.
//! Errors name the JSON key (`routes[1].condition.and[0]`); keys lopache does
//! not implement become one warning each.

use serde_json::{Map, Value};

use super::raw::{
    BindSpec, BindTable, DriverSpec, RawCondition, RawConfig, RawDestination, RawRoute,
};
use super::ConfigError;
use crate::redis::url::RedisUrl;

/// The translated config and the warnings about keys that were ignored.
pub fn translate(text: &str) -> Result<(RawConfig, Vec<String>), ConfigError> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?;
    let mut t = Translator::default();
    let root = t.object(&root, "")?;
    let mut raw = RawConfig::default();
    // Hipache and Lopache always honoured `X-Debug`: a drop-in config keeps that.
    raw.server.debug_headers = true;
    let mut legacy_redis = Map::new();
    for (k, v) in root {
        match k.as_str() {
            "driver" => raw.driver = t.driver(v, "driver")?,
            "user" => raw.user = t.name(v, "user")?,
            "group" => raw.group = t.name(v, "group")?,
            "server" => t.server(v, &mut raw)?,
            "http" => t.http(v, "http", &mut raw)?,
            "https" => t.https(v, "https", &mut raw)?,
            "routes" => {
                let routes = t.array(v, "routes")?;
                for (i, r) in routes.iter().enumerate() {
                    let route = t.route(r, &format!("routes[{i}]"))?;
                    raw.routes.push(route);
                }
            }
            // Appended after the loop: object keys come sorted, not in file order.
            "rollout" => {}
            "redisHost"
            | "redisPort"
            | "redisDatabase"
            | "redisDatabaseIndex"
            | "redisPassword"
            | "redisMasterHost"
            | "redisMasterPort"
            | "redisMasterPassword" => {
                legacy_redis.insert(k.clone(), v.clone());
            }
            // concussionjs-proxy: "redis": {"host", "port"[, "password", "db"]}.
            "redis" if root.contains_key("driver") => {
                return Err(err("redis", "conflicts with `driver`: name the Redis once"));
            }
            "redis" => raw.driver = t.concussion_driver(v)?,
            _ => t.ignored(k),
        }
    }
    if let Some(v) = root.get("rollout") {
        let route = t.rollout(v)?;
        raw.routes.push(route);
    }
    if let Some(first) = legacy_redis.keys().next() {
        // Where lopache reads routes from is said once, or it is an error.
        if root.contains_key("driver") || root.contains_key("redis") {
            return Err(err(
                first,
                "conflicts with `driver`/`redis`: name the Redis once",
            ));
        }
        raw.driver = t.legacy_driver(&legacy_redis)?;
    }
    Ok((raw, t.warnings))
}

#[derive(Default)]
struct Translator {
    warnings: Vec<String>,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}

impl Translator {
    fn ignored(&mut self, key: &str) {
        self.warnings.push(format!(
            "{key} is not implemented by lopache; it is ignored"
        ));
    }

    fn object<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Map<String, Value>, ConfigError> {
        v.as_object().ok_or_else(|| err(key, "expected an object"))
    }

    fn array<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Vec<Value>, ConfigError> {
        v.as_array().ok_or_else(|| err(key, "expected an array"))
    }

    fn string(&self, v: &Value, key: &str) -> Result<String, ConfigError> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| err(key, "expected a string"))
    }

    /// A user or group: a name or a numeric id.
    fn name(&self, v: &Value, key: &str) -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Null => Ok(String::new()),
            _ => Err(err(key, "expected a name or an id")),
        }
    }

    /// Node configs often carry numbers as strings ("30"); both are accepted.
    fn uint(&self, v: &Value, key: &str) -> Result<u64, ConfigError> {
        match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| err(key, "expected a non-negative integer"))
    }

    fn u32(&self, v: &Value, key: &str) -> Result<u32, ConfigError> {
        u32::try_from(self.uint(v, key)?).map_err(|_| err(key, "too large"))
    }

    fn port(&self, v: &Value, key: &str) -> Result<u16, ConfigError> {
        u16::try_from(self.uint(v, key)?).map_err(|_| err(key, "expected a port (0-65535)"))
    }

    fn boolean(&self, v: &Value, key: &str) -> Result<bool, ConfigError> {
        v.as_bool()
            .ok_or_else(|| err(key, "expected true or false"))
    }

    fn driver(&mut self, v: &Value, key: &str) -> Result<DriverSpec, ConfigError> {
        let mut defaulted = Vec::new();
        let mut check = |u: &str, k: String| {
            let url = RedisUrl::parse(u).map_err(|e| err(&k, e.to_string()))?;
            // hipache-raft writes "redis://:" for "the defaults".
            if let Some(rest) = u.split_once("://").map(|(_, r)| r) {
                let authority = rest.split(['/', '#']).next().unwrap_or("");
                let hostport = authority.rsplit('@').next().unwrap_or("");
                if hostport.is_empty() || hostport.starts_with(':') || hostport.ends_with(':') {
                    let at = match &url.endpoint {
                        crate::redis::url::Endpoint::Tcp { host, port } => format!("{host}:{port}"),
                        crate::redis::url::Endpoint::Unix(p) => p.display().to_string(),
                        crate::redis::url::Endpoint::Sentinel(set) => set.master.clone(),
                    };
                    defaulted.push(format!(
                        "{k}: {u:?} names no host or port: using {at}, as Hipache does"
                    ));
                }
            }
            Ok::<(), ConfigError>(())
        };
        match v {
            Value::String(s) => {
                check(s, key.to_string())?;
                self.warnings.append(&mut defaulted);
                Ok(DriverSpec::One(s.clone()))
            }
            Value::Array(items) if !items.is_empty() => {
                let mut urls = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let k = format!("{key}[{i}]");
                    let u = self.string(item, &k)?;
                    check(&u, k)?;
                    urls.push(u);
                }
                self.warnings.append(&mut defaulted);
                Ok(DriverSpec::Many(urls))
            }
            _ => Err(err(key, "expected a Redis URL or a list of them")),
        }
    }

    /// Hipache before 0.3: `redisHost`, `redisPort`, `redisDatabase` (or
    /// `redisDatabaseIndex`), `redisPassword` for the Redis read from, and
    /// `redisMasterHost`, `redisMasterPort`, `redisMasterPassword` for the
    /// master dead marks go to: a `[read, write]` driver list.
    fn legacy_driver(&self, m: &Map<String, Value>) -> Result<DriverSpec, ConfigError> {
        let db = match m.get("redisDatabase").or(m.get("redisDatabaseIndex")) {
            Some(v) => self.uint(v, "redisDatabase")?,
            None => 0,
        };
        let read = self.legacy_url(m, "redis", "127.0.0.1", 6379, db)?;
        if !["redisMasterHost", "redisMasterPort", "redisMasterPassword"]
            .iter()
            .any(|k| m.contains_key(*k))
        {
            return Ok(DriverSpec::One(read));
        }
        // The master defaults to the read side's host and port.
        let host = match m.get("redisHost") {
            Some(v) => self.string(v, "redisHost")?,
            None => "127.0.0.1".into(),
        };
        let port = match m.get("redisPort") {
            Some(v) => self.port(v, "redisPort")?,
            None => 6379,
        };
        let write = self.legacy_url(m, "redisMaster", &host, port, db)?;
        Ok(DriverSpec::Many(vec![read, write]))
    }

    /// `redis://[:password@]host:port/db` from `<prefix>Host`, `<prefix>Port`
    /// and `<prefix>Password`.
    fn legacy_url(
        &self,
        m: &Map<String, Value>,
        prefix: &str,
        default_host: &str,
        default_port: u16,
        db: u64,
    ) -> Result<String, ConfigError> {
        let key = |name: &str| format!("{prefix}{name}");
        let host = match m.get(&key("Host")) {
            Some(v) => self.string(v, &key("Host"))?,
            None => default_host.into(),
        };
        let port = match m.get(&key("Port")) {
            Some(v) => self.port(v, &key("Port"))?,
            None => default_port,
        };
        let auth = match m.get(&key("Password")) {
            Some(Value::String(p)) if !p.is_empty() => format!(":{p}@"),
            _ => String::new(),
        };
        Ok(format!("redis://{auth}{host}:{port}/{db}"))
    }

    /// concussionjs-proxy's `"redis": {"host", "port", "password", "db"}`.
    fn concussion_driver(&mut self, v: &Value) -> Result<DriverSpec, ConfigError> {
        let mut m = Map::new();
        for (k, v) in self.object(v, "redis")? {
            let name = match k.as_str() {
                "host" => "redisHost",
                "port" => "redisPort",
                "password" => "redisPassword",
                "db" | "database" => "redisDatabase",
                _ => {
                    // Where lopache connects is never guessed at.
                    return Err(err(
                        &format!("redis.{k}"),
                        "not understood (known: host, port, password, db)",
                    ));
                }
            };
            m.insert(name.into(), v.clone());
        }
        self.legacy_driver(&m)
    }

    fn server(&mut self, v: &Value, raw: &mut RawConfig) -> Result<(), ConfigError> {
        for (k, v) in self.object(v, "server")? {
            let key = format!("server.{k}");
            let s = &mut raw.server;
            match k.as_str() {
                "debug" => s.debug = self.boolean(v, &key)?,
                "workers" => s.workers = self.u32(v, &key)?,
                "maxSockets" => s.max_sockets = self.u32(v, &key)?,
                "tcpTimeout" => s.tcp_timeout = self.uint(v, &key)?,
                "deadBackendTTL" => s.dead_backend_ttl = self.uint(v, &key)?,
                "retryOnError" => s.retry_on_error = self.u32(v, &key)?,
                "httpKeepAlive" => s.http_keep_alive = self.boolean(v, &key)?,
                "deadBackendOn500" => s.dead_backend_on_500 = self.boolean(v, &key)?,
                "accessLog" => {
                    s.access_log = match v {
                        Value::Null => "none".into(),
                        other => self.string(other, &key)?,
                    }
                }
                "staticDir" => {
                    s.static_dir = match v {
                        Value::Null => String::new(),
                        other => self.string(other, &key)?,
                    }
                }
                // Hipache before 0.3 kept the listeners under `server`.
                "port" => raw.http.port = self.port(v, &key)?,
                "address" => raw.http.bind = self.binds(v, &key, false)?,
                // Sorted after "address": the IPv6 addresses join its list.
                "address6" => {
                    let v6 = self.binds(v, &key, false)?;
                    raw.http.bind.extend(v6)
                }
                "https" => self.https(v, &key, raw)?,
                _ => self.ignored(&key),
            }
        }
        Ok(())
    }

    fn http(&mut self, v: &Value, section: &str, raw: &mut RawConfig) -> Result<(), ConfigError> {
        for (k, v) in self.object(v, section)? {
            let key = format!("{section}.{k}");
            match k.as_str() {
                "port" => raw.http.port = self.port(v, &key)?,
                "bind" => raw.http.bind = self.binds(v, &key, false)?,
                _ => self.ignored(&key),
            }
        }
        Ok(())
    }

    fn https(&mut self, v: &Value, section: &str, raw: &mut RawConfig) -> Result<(), ConfigError> {
        for (k, v) in self.object(v, section)? {
            let key = format!("{section}.{k}");
            match k.as_str() {
                "port" => raw.https.port = self.port(v, &key)?,
                "bind" => raw.https.bind = self.binds(v, &key, true)?,
                "key" => raw.https.key = self.string(v, &key)?,
                "cert" => raw.https.cert = self.string(v, &key)?,
                // Node sends `ca` after the certificate: intermediates.
                "ca" => {
                    raw.https.chain = match v {
                        Value::Array(items) => items
                            .iter()
                            .enumerate()
                            .map(|(i, item)| self.string(item, &format!("{key}[{i}]")))
                            .collect::<Result<_, _>>()?,
                        Value::Null => Vec::new(),
                        other => vec![self.string(other, &key)?],
                    }
                }
                // Node's protocol floor: lopache never offers less than TLS
                // 1.2; a 1.3 floor is the `modern` preset.
                "secureProtocol" => {
                    let method = self.string(v, &key)?;
                    raw.https.preset = match method.as_str() {
                        "TLSv1_3_method" | "TLSv1_3_server_method" => "modern".into(),
                        "TLSv1_2_method" | "TLSv1_2_server_method" => "intermediate".into(),
                        other => {
                            self.warnings.push(format!(
                                "{key}: {other:?} allows protocols below TLS 1.2, which lopache never offers: using the \"intermediate\" preset (TLS 1.2 and 1.3)"
                            ));
                            "intermediate".into()
                        }
                    };
                }
                // An encrypted key cannot be served without its passphrase,
                // and lopache reads keys in the clear only: say how.
                "passphrase" if matches!(v, Value::Null) || v.as_str() == Some("") => {}
                "passphrase" => {
                    return Err(err(
                        &key,
                        "encrypted private keys are not supported: decrypt it once (openssl pkey -in key.pem -out key-clear.pem), keep it readable by root only, and name that file in `key`",
                    ));
                }
                _ => self.ignored(&key),
            }
        }
        // Pre-0.3 configs had no https.bind: Hipache listened for HTTPS on
        // `server.address` (and `address6`), never on an interface not named.
        if section == "server.https" && raw.https.bind.is_empty() {
            raw.https.bind = raw.http.bind.clone();
        }
        Ok(())
    }

    /// `"1.2.3.4"`, `["1.2.3.4", "::1"]`, or objects `{address, port, key, cert}`.
    fn binds(&mut self, v: &Value, key: &str, tls: bool) -> Result<Vec<BindSpec>, ConfigError> {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let k = format!("{key}[{i}]");
            out.push(match item {
                Value::String(s) => BindSpec::Address(s.clone()),
                Value::Object(m) => {
                    let mut table = BindTable {
                        address: String::new(),
                        port: None,
                        cert: None,
                        key: None,
                        proxy_protocol: None,
                    };
                    for (field, fv) in m {
                        let fk = format!("{k}.{field}");
                        match field.as_str() {
                            "address" => table.address = self.string(fv, &fk)?,
                            "port" => table.port = Some(self.port(fv, &fk)?),
                            "cert" if tls => table.cert = Some(self.string(fv, &fk)?),
                            "key" if tls => table.key = Some(self.string(fv, &fk)?),
                            _ => self.ignored(&fk),
                        }
                    }
                    if table.address.is_empty() {
                        return Err(err(&k, "needs an address"));
                    }
                    BindSpec::Table(table)
                }
                _ => {
                    return Err(err(
                        &k,
                        "expected an address or an object { address, port }",
                    ))
                }
            });
        }
        Ok(out)
    }

    fn route(&mut self, v: &Value, key: &str) -> Result<RawRoute, ConfigError> {
        let m = self.object(v, key)?;
        let condition = match m.get("condition") {
            Some(c) => self.condition(c, &format!("{key}.condition"))?,
            None => return Err(err(key, "needs a condition")),
        };
        let destination = match m.get("destination") {
            Some(d) => self.destination(d, &format!("{key}.destination"))?,
            None => return Err(err(key, "needs a destination")),
        };
        for k in m
            .keys()
            .filter(|k| *k != "condition" && *k != "destination")
        {
            self.ignored(&format!("{key}.{k}"));
        }
        Ok(RawRoute {
            condition,
            destination,
        })
    }

    /// One condition: an object with exactly one key naming it.
    fn condition(&mut self, v: &Value, key: &str) -> Result<RawCondition, ConfigError> {
        let m = self.object(v, key)?;
        let mut entries = m.iter();
        let (Some((name, body)), None) = (entries.next(), entries.next()) else {
            return Err(err(key, "expected exactly one condition name"));
        };
        let k = format!("{key}.{name}");
        Ok(match name.as_str() {
            "and" | "or" | "any" => {
                // Lopache writes `and: { conditions: [...] }`; a bare list is accepted too.
                let list = match body {
                    Value::Object(o) => o
                        .get("conditions")
                        .ok_or_else(|| err(&k, "needs conditions"))?,
                    other => other,
                };
                let items = self.array(list, &k)?;
                if items.is_empty() {
                    return Err(err(&k, "needs at least one condition"));
                }
                let mut conds = Vec::new();
                for (i, c) in items.iter().enumerate() {
                    conds.push(self.condition(c, &format!("{k}[{i}]"))?);
                }
                if name == "and" {
                    RawCondition::And(conds)
                } else {
                    RawCondition::Or(conds)
                }
            }
            "not" => RawCondition::Not(Box::new(self.condition(body, &k)?)),
            "pathPrefix" => RawCondition::PathPrefix(self.string(body, &k)?),
            "pathMatchesPattern" | "pathMatches" => {
                let o = self.object(body, &k)?;
                let driver = match o.get("driver") {
                    Some(d) => Some(self.driver(d, &format!("{k}.driver"))?),
                    None => None,
                };
                // Without an explicit prefix, the driver URL's #prefix is the keyspace.
                let prefix = match (o.get("prefix"), &driver) {
                    (Some(p), _) => self.string(p, &format!("{k}.prefix"))?,
                    (None, Some(d)) => RedisUrl::parse(d.urls()[0])
                        .map(|u| u.prefix)
                        .unwrap_or_default(),
                    (None, None) => String::new(),
                };
                RawCondition::PathMatches { prefix, driver }
            }
            "sessionIsIncludedInSegment" | "includedInSegment" => {
                let (cookie, max_segment_id) = self.segment(body, &k)?;
                RawCondition::IncludedInSegment {
                    cookie,
                    max_segment_id,
                }
            }
            other => return Err(err(key, format!("unknown condition {other:?}"))),
        })
    }

    fn segment(&mut self, v: &Value, key: &str) -> Result<(String, u32), ConfigError> {
        let o = self.object(v, key)?;
        let cookie = match o.get("cookie") {
            Some(c) => self.string(c, &format!("{key}.cookie"))?,
            None => return Err(err(key, "needs a cookie name")),
        };
        let max = match o.get("maxSegmentId") {
            Some(m) => self.u32(m, &format!("{key}.maxSegmentId"))?,
            None => return Err(err(key, "needs maxSegmentId")),
        };
        if max > 99 {
            return Err(err(
                &format!("{key}.maxSegmentId"),
                "must be between 0 and 99",
            ));
        }
        Ok((cookie, max))
    }

    fn destination(&mut self, v: &Value, key: &str) -> Result<RawDestination, ConfigError> {
        let m = self.object(v, key)?;
        match (m.get("randomBackendForHost"), m.len()) {
            (Some(d), 1) => {
                let k = format!("{key}.randomBackendForHost");
                let driver = match self.object(d, &k)?.get("driver") {
                    Some(u) => self.driver(u, &format!("{k}.driver"))?,
                    None => return Err(err(&k, "needs a driver")),
                };
                Ok(RawDestination::RandomBackendForHost { driver })
            }
            _ => Err(err(key, "expected { randomBackendForHost: { driver } }")),
        }
    }

    /// Lopache's earlier single rollout: `rollout: { cookie, driver, maxSegmentId }`.
    fn rollout(&mut self, v: &Value) -> Result<RawRoute, ConfigError> {
        let (cookie, max_segment_id) = self.segment(v, "rollout")?;
        let o = self.object(v, "rollout")?;
        let driver = match o.get("driver") {
            Some(d) => self.driver(d, "rollout.driver")?,
            None => return Err(err("rollout", "needs a driver")),
        };
        for k in o
            .keys()
            .filter(|k| !["cookie", "driver", "maxSegmentId"].contains(&k.as_str()))
        {
            self.ignored(&format!("rollout.{k}"));
        }
        Ok(RawRoute {
            condition: RawCondition::IncludedInSegment {
                cookie,
                max_segment_id,
            },
            destination: RawDestination::RandomBackendForHost { driver },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(json: &str) -> (RawConfig, Vec<String>) {
        translate(json).unwrap()
    }

    fn e(json: &str) -> String {
        translate(json).unwrap_err().to_string()
    }

    #[test]
    fn hipache_03_config() {
        let (raw, warnings) = t(r#"{
            "server": {"debug": false, "workers": 4, "maxSockets": 50, "tcpTimeout": "20",
                       "deadBackendTTL": 10, "retryOnError": 2, "accessLog": "/tmp/a.log",
                       "httpKeepAlive": false, "deadBackendOn500": false, "staticDir": null, "lruCache": true},
            "http": {"port": 8080, "bind": ["127.0.0.1", {"address": "::1", "port": 8081}]},
            "https": {"port": 8443, "bind": [], "key": "k.pem", "cert": "c.pem", "secureProtocol": "SSLv23_method"},
            "driver": ["redis://127.0.0.1:6379", "redis://10.0.0.1:6379"],
            "user": "www-data", "group": 33
        }"#);
        assert_eq!(
            (
                raw.server.workers,
                raw.server.max_sockets,
                raw.server.tcp_timeout
            ),
            (4, 50, 20)
        );
        assert_eq!(
            (raw.server.dead_backend_ttl, raw.server.retry_on_error),
            (10, 2)
        );
        assert!(!raw.server.http_keep_alive && !raw.server.dead_backend_on_500);
        assert_eq!(raw.http.port, 8080);
        assert_eq!(raw.http.bind.len(), 2);
        assert_eq!(
            (raw.https.key.as_str(), raw.https.cert.as_str()),
            ("k.pem", "c.pem")
        );
        assert_eq!(raw.driver.urls().len(), 2);
        assert_eq!((raw.user.as_str(), raw.group.as_str()), ("www-data", "33"));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.starts_with("server.lruCache")));
        assert!(warnings
            .iter()
            .any(|w| w.starts_with("https.secureProtocol")));
    }

    #[test]
    fn pre_03_shapes() {
        let (raw, _) = t(r#"{"server": {"port": 1080, "address": ["127.0.0.1"],
            "https": {"port": 1443, "key": "k", "cert": "c"}}, "redisHost": "10.1.1.1", "redisPort": 7777}"#);
        assert_eq!(raw.http.port, 1080);
        assert_eq!(raw.https.port, 1443);
        assert_eq!(
            raw.driver,
            DriverSpec::One("redis://10.1.1.1:7777/0".into())
        );
    }

    #[test]
    fn lopache_routes_with_both_names() {
        let (raw, _) = t(r#"{"routes": [
            {"condition": {"and": {"conditions": [
                {"pathMatchesPattern": {"driver": "redis:#paths:"}},
                {"sessionIsIncludedInSegment": {"cookie": "_s", "maxSegmentId": 50}}]}},
             "destination": {"randomBackendForHost": {"driver": "redis:#rollout:"}}},
            {"condition": {"includedInSegment": {"cookie": "c", "maxSegmentId": 5}},
             "destination": {"randomBackendForHost": {"driver": ["redis:", "redis://10.0.0.1"]}}}
        ], "rollout": {"cookie": "r", "driver": "redis:#old:", "maxSegmentId": 10}}"#);
        assert_eq!(raw.routes.len(), 3);
        let RawCondition::And(items) = &raw.routes[0].condition else {
            panic!()
        };
        assert_eq!(
            items[0],
            RawCondition::PathMatches {
                prefix: "paths:".into(),
                driver: Some(DriverSpec::One("redis:#paths:".into()))
            }
        );
        assert_eq!(
            raw.routes[2].condition,
            RawCondition::IncludedInSegment {
                cookie: "r".into(),
                max_segment_id: 10
            }
        );
    }

    #[test]
    fn errors_name_the_json_key() {
        assert_eq!(
            e(
                r#"{"routes": [{"condition": {"pathPrefix": "/"}, "destination": {"randomBackendForHost": {"driver": "redis:"}}},
                 {"condition": {"and": {"conditions": [{"pathMatchesPatern": {}}]}},
                  "destination": {"randomBackendForHost": {"driver": "redis:"}}}]}"#
            ),
            "routes[1].condition.and[0]: unknown condition \"pathMatchesPatern\""
        );
        assert_eq!(
            e(
                r#"{"routes": [{"condition": {"includedInSegment": {"cookie": "c", "maxSegmentId": 100}},
                  "destination": {"randomBackendForHost": {"driver": "redis:"}}}]}"#
            ),
            "routes[0].condition.includedInSegment.maxSegmentId: must be between 0 and 99"
        );
        assert_eq!(
            e(r#"{"routes": [{"condition": {"and": {"conditions": []}},
                  "destination": {"randomBackendForHost": {"driver": "redis:"}}}]}"#),
            "routes[0].condition.and: needs at least one condition"
        );
        assert!(e(r#"{"routes": [{"condition": {"pathPrefix": "/"},
                  "destination": {"randomBackendForHost": {"driver": "mysql://x"}}}]}"#)
        .starts_with("routes[0].destination.randomBackendForHost.driver: "));
        assert!(e(r#"{"server": {"workers": "many"}}"#).starts_with("server.workers: "));
        assert!(e("{ not json").starts_with("invalid JSON"));
    }
}
