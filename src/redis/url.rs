//! Driver URL parsing (README, "Configuration"): `redis://[user][:password@]host[:port][/db][#prefix]`,
//! `redis+unix:///path[?db=N][#prefix]` and
//! `redis-sentinel://[:password@]host1:port1,host2:port2/<master>[/db][?role=replica][#prefix]`.
//! Every part of `redis://` is optional, so `redis:` alone means
//! 127.0.0.1:6379, db 0, no password, no prefix.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
    /// Whatever server the sentinels name (see `redis::sentinel`).
    Sentinel(SentinelSet),
}

/// Sentinels watching one master, and which of its servers is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentinelSet {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    /// `?role=replica`: a healthy replica (one on a loopback address first),
    /// else the master.
    pub replica: bool,
}

/// One parsed driver URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisUrl {
    pub endpoint: Endpoint,
    /// ACL user name, sent with AUTH when a password is given.
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// Prepended verbatim to `frontend:` and `dead:` keys, as Hipache does.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "expected a URL starting with redis://, redis+unix:// or redis-sentinel://, got {0:?}"
    )]
    Scheme(String),
    #[error("invalid port {0:?}")]
    Port(String),
    #[error("invalid database number {0:?}")]
    Db(String),
    #[error("unix socket URL needs a path")]
    NoPath,
    #[error("invalid percent-encoding in the password")]
    Percent,
    #[error("unexpected query {0:?}")]
    Query(String),
    #[error("a sentinel URL names its master: redis-sentinel://host:port,host:port/<master>")]
    NoMaster,
}

impl RedisUrl {
    pub fn parse(input: &str) -> Result<RedisUrl, UrlError> {
        let (body, prefix) = match input.split_once('#') {
            Some((b, p)) => (b, p.to_string()),
            None => (input, String::new()),
        };
        if let Some(rest) = body
            .strip_prefix("redis+unix://")
            .or_else(|| body.strip_prefix("unix://"))
        {
            return parse_unix(rest, prefix);
        }
        if let Some(rest) = body.strip_prefix("redis-sentinel://") {
            return parse_sentinel(rest, prefix);
        }
        let rest = body
            .strip_prefix("redis:")
            .ok_or_else(|| UrlError::Scheme(input.to_string()))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = parse_userinfo(userinfo)?;
        let (host, port) = split_host_port(hostport)?;
        let db = match path.trim_end_matches('/') {
            "" => 0,
            d => d.parse().map_err(|_| UrlError::Db(d.to_string()))?,
        };
        Ok(RedisUrl {
            endpoint: Endpoint::Tcp {
                host: if host.is_empty() {
                    "127.0.0.1".into()
                } else {
                    host
                },
                port,
            },
            username,
            password,
            db,
            prefix,
        })
    }

    /// The URL with any password replaced by `***`, for logs and `--dry`.
    pub fn masked(&self) -> String {
        let mut s = String::new();
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_string(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        match &self.endpoint {
            Endpoint::Tcp { host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                s.push_str(&format!("redis://{auth}{host}:{port}/{}", self.db));
            }
            Endpoint::Unix(path) => {
                s.push_str(&format!(
                    "redis+unix://{auth}{}?db={}",
                    path.display(),
                    self.db
                ));
            }
            Endpoint::Sentinel(set) => {
                let hosts: Vec<String> = set
                    .sentinels
                    .iter()
                    .map(|(h, p)| {
                        if h.contains(':') {
                            format!("[{h}]:{p}")
                        } else {
                            format!("{h}:{p}")
                        }
                    })
                    .collect();
                s.push_str(&format!(
                    "redis-sentinel://{auth}{}/{}/{}",
                    hosts.join(","),
                    set.master,
                    self.db
                ));
                if set.replica {
                    s.push_str("?role=replica");
                }
            }
        }
        if !self.prefix.is_empty() {
            s.push('#');
            s.push_str(&self.prefix);
        }
        s
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

fn parse_unix(rest: &str, prefix: String) -> Result<RedisUrl, UrlError> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(UrlError::NoPath);
    }
    let mut db = 0;
    let mut password = None;
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("db", v)) => db = v.parse().map_err(|_| UrlError::Db(v.to_string()))?,
            Some(("password", v)) => password = Some(percent_decode(v)?),
            _ => return Err(UrlError::Query(pair.to_string())),
        }
    }
    Ok(RedisUrl {
        endpoint: Endpoint::Unix(PathBuf::from(path)),
        username: None,
        password,
        db,
        prefix,
    })
}

fn parse_sentinel(rest: &str, prefix: String) -> Result<RedisUrl, UrlError> {
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let replica = match query {
        None => false,
        Some("role=replica") => true,
        Some("role=master") => false,
        Some(q) => return Err(UrlError::Query(q.to_string())),
    };
    let (authority, path) = rest.split_once('/').ok_or(UrlError::NoMaster)?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = parse_userinfo(userinfo)?;
    let mut sentinels = Vec::new();
    for hostport in hosts.split(',') {
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(UrlError::Port(hostport.to_string()));
        }
        // A sentinel's own port when none is given.
        let named = match hostport.rsplit_once(']') {
            Some((_, after)) => after.starts_with(':'),
            None => hostport.contains(':'),
        };
        let port = if named { port } else { 26379 };
        sentinels.push((host, port));
    }
    let (master, db) = match path.trim_end_matches('/').split_once('/') {
        Some((m, d)) => (m, d.parse().map_err(|_| UrlError::Db(d.to_string()))?),
        None => (path.trim_end_matches('/'), 0),
    };
    if master.is_empty() || !master.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlError::NoMaster);
    }
    Ok(RedisUrl {
        endpoint: Endpoint::Sentinel(SentinelSet {
            sentinels,
            master: master.to_string(),
            replica,
        }),
        username,
        password,
        db,
        prefix,
    })
}

fn parse_userinfo(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>), UrlError> {
    let Some(info) = userinfo else {
        return Ok((None, None));
    };
    let (user, pass) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let user = (!user.is_empty())
        .then(|| percent_decode(user))
        .transpose()?;
    let pass = pass
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .transpose()?;
    Ok((user, pass))
}

fn split_host_port(hostport: &str) -> Result<(String, u16), UrlError> {
    const DEFAULT_PORT: u16 = 6379;
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| UrlError::Port(hostport.into()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(UrlError::Port(after.into())),
        };
        return Ok((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), parse_port(p)?)),
        None => Ok((hostport.to_string(), DEFAULT_PORT)),
    }
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    if p.is_empty() {
        return Ok(6379);
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(UrlError::Port(p.to_string())),
    }
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UrlError::Percent)?;
            let hex = std::str::from_utf8(hex).map_err(|_| UrlError::Percent)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UrlError::Percent)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let u = RedisUrl::parse("redis-sentinel://:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:5000/mymaster/2?role=replica#p:")
            .unwrap();
        assert_eq!(
            u.endpoint,
            Endpoint::Sentinel(SentinelSet {
                sentinels: vec![
                    ("10.0.0.1".into(), 26380),
                    ("sentinel-b".into(), 26379),
                    ("::1".into(), 5000)
                ],
                master: "mymaster".into(),
                replica: true,
            })
        );
        assert_eq!(
            (u.password.as_deref(), u.db, u.prefix.as_str()),
            (Some("s@cret"), 2, "p:")
        );
        assert_eq!(
            u.masked(),
            "redis-sentinel://:***@10.0.0.1:26380,sentinel-b:26379,[::1]:5000/mymaster/2?role=replica#p:"
        );
        let plain = RedisUrl::parse("redis-sentinel://127.0.0.1:1/m").unwrap();
        assert_eq!(plain.db, 0);
        assert_eq!(RedisUrl::parse(&plain.masked()).unwrap(), plain);
        for bad in [
            "redis-sentinel://127.0.0.1:1",
            "redis-sentinel://127.0.0.1:1/",
            "redis-sentinel://127.0.0.1:1/m/x",
            "redis-sentinel://127.0.0.1:1/m?role=leader",
            "redis-sentinel://127.0.0.1:0/m",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn defaults_and_parts() {
        let u = RedisUrl::parse("redis:").unwrap();
        assert_eq!(
            (u.endpoint, u.db, u.password, u.prefix.as_str()),
            (tcp("127.0.0.1", 6379), 0, None, "")
        );
        let u = RedisUrl::parse("redis://:s%40cret@10.0.0.1:6380/3#rollout:").unwrap();
        assert_eq!(u.endpoint, tcp("10.0.0.1", 6380));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!((u.db, u.prefix.as_str()), (3, "rollout:"));
        assert_eq!(u.masked(), "redis://:***@10.0.0.1:6380/3#rollout:");
        let u = RedisUrl::parse("redis://app:pw@[::1]/").unwrap();
        assert_eq!(
            (u.endpoint, u.username.as_deref()),
            (tcp("::1", 6379), Some("app"))
        );
        let u = RedisUrl::parse("redis://#p").unwrap();
        assert_eq!(
            (u.endpoint, u.prefix.as_str()),
            (tcp("127.0.0.1", 6379), "p")
        );
        let u = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!(u.endpoint, tcp("localhost", 6379));
    }

    #[test]
    fn unix_socket_urls() {
        let u = RedisUrl::parse("redis+unix:///run/redis.sock?db=2#x:").unwrap();
        assert_eq!(u.endpoint, Endpoint::Unix("/run/redis.sock".into()));
        assert_eq!((u.db, u.prefix.as_str()), (2, "x:"));
        assert!(RedisUrl::parse("redis+unix://").is_err());
    }

    #[test]
    fn refusals() {
        for bad in [
            "http://x",
            "redis://h:99999",
            "redis://h:+1",
            "redis://h/abc",
            "redis://:%zz@h",
            "6379",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
