//! Backend URLs as stored in frontend lists: `http://192.168.0.42:80`,
//! `http://app.internal` (port 80), `https://...` (port 443). A path, if any,
//! is ignored, as Hipache does.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed backend URL, borrowing its host from the URL text (parsed once
/// per attempt, so it should not allocate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendUrl<'a> {
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: &'a str,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid backend URL {0:?}")]
pub struct BadBackendUrl(pub String);

impl<'a> BackendUrl<'a> {
    pub fn parse(url: &'a str) -> Result<BackendUrl<'a>, BadBackendUrl> {
        let bad = || BadBackendUrl(url.to_string());
        let trimmed = url.trim();
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(trimmed, "http://") {
            (Scheme::Http, r)
        } else if let Some(r) = strip_prefix_ci(trimmed, "https://") {
            (Scheme::Https, r)
        } else if trimmed.contains("://") {
            return Err(bad());
        } else {
            (Scheme::Http, trimmed)
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(BackendUrl { scheme, host, port })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = |u: &str, s, h: &str, p| {
            assert_eq!(
                BackendUrl::parse(u).unwrap(),
                BackendUrl {
                    scheme: s,
                    host: h,
                    port: p
                },
                "{u}"
            )
        };
        ok("http://192.168.0.42:80", Scheme::Http, "192.168.0.42", 80);
        ok("http://app.internal", Scheme::Http, "app.internal", 80);
        ok("HTTP://app:8080/some/path", Scheme::Http, "app", 8080);
        ok(
            "https://secure.example",
            Scheme::Https,
            "secure.example",
            443,
        );
        ok("http://[::1]:9000", Scheme::Http, "::1", 9000);
        ok("127.0.0.1:8080", Scheme::Http, "127.0.0.1", 8080);
        for bad in [
            "ftp://x",
            "http://",
            "http://x:y",
            "http://x:0",
            "http://[::1",
            "http://x:70000",
        ] {
            assert!(BackendUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
