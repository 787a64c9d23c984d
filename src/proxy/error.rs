//! Why lopache answered a request itself. One exhaustive `match` maps each
//! to its status, so adding a variant forces a decision about it.

/// Why a request was answered by lopache itself instead of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no Host header")]
    MissingHost,
    #[error("invalid Host header")]
    BadHost,
    #[error("unknown virtual host")]
    UnknownFrontend,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("routing store unavailable")]
    RoutingUnavailable,
    #[error("no live backend")]
    NoLiveBackend,
    #[error("backend connection failed")]
    UpstreamConnect,
    #[error("backend failed before answering")]
    UpstreamFailed,
    #[error("backend sent an invalid response")]
    BadUpstreamResponse,
    #[error("backend URL not usable")]
    BadBackendUrl,
    #[error("backend timed out")]
    UpstreamTimeout,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("every connection to the backend is in use")]
    PoolExhausted,
    #[error("lopache is out of a local resource (descriptors, ports, memory)")]
    LocalResources,
    #[error("the frontend's list in Redis is over the reply size limit")]
    RouteTooLarge,
    #[error("more path segments than route conditions take")]
    PathTooLong,
    #[error("the backend's host name did not resolve")]
    DnsFailed,
}

impl ProxyError {
    pub fn status(self) -> u16 {
        match self {
            ProxyError::MissingHost | ProxyError::BadHost | ProxyError::UnknownFrontend => 400,
            ProxyError::MethodNotAllowed => 405,
            ProxyError::BodyTimeout => 408,
            ProxyError::PathTooLong => 414,
            ProxyError::RoutingUnavailable
            | ProxyError::PoolExhausted
            | ProxyError::LocalResources => 503,
            ProxyError::NoLiveBackend
            | ProxyError::UpstreamConnect
            | ProxyError::UpstreamFailed
            | ProxyError::BadUpstreamResponse
            | ProxyError::BadBackendUrl
            | ProxyError::RouteTooLarge
            | ProxyError::DnsFailed => 502,
            ProxyError::UpstreamTimeout => 504,
        }
    }

    /// Short tag for the `x-debug-error` header.
    pub fn tag(self) -> &'static str {
        match self {
            ProxyError::MissingHost => "missing-host",
            ProxyError::BadHost => "bad-host",
            ProxyError::UnknownFrontend => "unknown-frontend",
            ProxyError::MethodNotAllowed => "method-not-allowed",
            ProxyError::RoutingUnavailable => "routing-unavailable",
            ProxyError::NoLiveBackend => "no-live-backend",
            ProxyError::UpstreamConnect => "connect-failed",
            ProxyError::UpstreamFailed => "backend-failed",
            ProxyError::BadUpstreamResponse => "bad-response",
            ProxyError::BadBackendUrl => "bad-backend-url",
            ProxyError::UpstreamTimeout => "backend-timeout",
            ProxyError::BodyTimeout => "body-timeout",
            ProxyError::PoolExhausted => "pool-exhausted",
            ProxyError::LocalResources => "local-resources",
            ProxyError::RouteTooLarge => "route-too-large",
            ProxyError::PathTooLong => "path-too-long",
            ProxyError::DnsFailed => "dns-failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let table = [
            (ProxyError::UnknownFrontend, 400),
            (ProxyError::MethodNotAllowed, 405),
            (ProxyError::BodyTimeout, 408),
            (ProxyError::PathTooLong, 414),
            (ProxyError::NoLiveBackend, 502),
            (ProxyError::DnsFailed, 502),
            (ProxyError::UpstreamTimeout, 504),
            // lopache's own shortages are a 503, never a backend's 502.
            (ProxyError::RoutingUnavailable, 503),
            (ProxyError::PoolExhausted, 503),
            (ProxyError::LocalResources, 503),
        ];
        for (error, status) in table {
            assert_eq!(error.status(), status, "{error}");
        }
    }
}
