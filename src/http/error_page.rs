//! Canned error responses: 400/414/431/502/503/504 pages from `static_dir`
//! (`error_<code>.html`, then `error_default.html`) or the built-in copies of
//! `static/`, with the headers the README's "HTTP behaviour" lists.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Pages compiled into the binary so lopache works from any directory.
const BUILTIN: &[(u16, &str)] = &[
    (400, include_str!("../../static/error_400.html")),
    (405, include_str!("../../static/error_405.html")),
    (414, include_str!("../../static/error_414.html")),
    (431, include_str!("../../static/error_431.html")),
    (502, include_str!("../../static/error_502.html")),
    (503, include_str!("../../static/error_503.html")),
    (504, include_str!("../../static/error_504.html")),
];
const BUILTIN_DEFAULT: &str = include_str!("../../static/error_default.html");

/// The standard reason phrase for the statuses lopache produces itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Error page bodies, resolved once at config load; never read per request.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    /// Pages from `static_dir`, by status.
    custom: HashMap<u16, Vec<u8>>,
    /// `static_dir/error_default.html`, if present.
    custom_default: Option<Vec<u8>>,
}

impl ErrorPages {
    /// Only the built-in pages.
    pub fn builtin() -> Self {
        ErrorPages::default()
    }

    /// Reads every `error_<code>.html` and `error_default.html` in `dir`.
    pub fn load(files: &mut crate::files::Files, dir: &Path) -> std::io::Result<Self> {
        let mut pages = ErrorPages::default();
        for path in files.read_dir(dir)? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name
                .strip_prefix("error_")
                .and_then(|n| n.strip_suffix(".html"))
            else {
                continue;
            };
            if stem == "default" {
                pages.custom_default = Some(files.read(&path)?);
            } else if let Ok(code) = stem.parse::<u16>() {
                pages.custom.insert(code, files.read(&path)?);
            }
        }
        Ok(pages)
    }

    pub fn body(&self, status: u16) -> &[u8] {
        if let Some(page) = self.custom.get(&status) {
            return page;
        }
        if let Some(page) = &self.custom_default {
            return page;
        }
        BUILTIN
            .iter()
            .find(|(code, _)| *code == status)
            .map_or(BUILTIN_DEFAULT, |(_, page)| page)
            .as_bytes()
    }

    /// Appends a complete error response. `extra` holds whole header lines.
    pub fn write_response(
        &self,
        status: u16,
        keep_alive: bool,
        head_only: bool,
        extra: &[u8],
        out: &mut Vec<u8>,
    ) {
        let body = self.body(status);
        let _ = write!(
            out,
            "HTTP/1.1 {status} {}\r\ncontent-type: text/html\r\ncache-control: no-cache\r\ncontent-length: {}\r\n",
            reason(status),
            body.len()
        );
        out.extend_from_slice(extra);
        out.extend_from_slice(if keep_alive {
            &b"connection: keep-alive\r\n\r\n"[..]
        } else {
            &b"connection: close\r\n\r\n"[..]
        });
        if !head_only {
            out.extend_from_slice(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pages_and_fallback() {
        let p = ErrorPages::builtin();
        assert!(String::from_utf8_lossy(p.body(502)).contains("502 Bad Gateway"));
        assert!(String::from_utf8_lossy(p.body(418)).contains("could not be served"));
        let mut out = Vec::new();
        p.write_response(503, false, false, b"x-debug-error: redis\r\n", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\ncache-control: no-cache\r\n"));
        assert!(s.contains("x-debug-error: redis\r\nconnection: close\r\n\r\n<!DOCTYPE html>"));
    }

    #[test]
    fn static_dir_overrides_then_default() {
        let dir = std::env::temp_dir().join(format!("lopache-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("error_502.html"), "custom 502").unwrap();
        std::fs::write(dir.join("error_default.html"), "custom default").unwrap();
        let p = ErrorPages::load(&mut crate::files::Files::from_disk(), &dir).unwrap();
        assert_eq!(p.body(502), b"custom 502");
        assert_eq!(p.body(504), b"custom default");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
