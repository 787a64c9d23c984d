//! Proxy errors with the side that caused them. One exhaustive `match` maps
//! each to its status, so adding a variant forces a decision about it.

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Lopache,
}

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

    pub fn side(self) -> Side {
        match self {
            ProxyError::MissingHost
            | ProxyError::BadHost
            | ProxyError::UnknownFrontend
            | ProxyError::MethodNotAllowed
            | ProxyError::BodyTimeout
            | ProxyError::PathTooLong => Side::Client,
            ProxyError::RoutingUnavailable
            | ProxyError::BadBackendUrl
            | ProxyError::PoolExhausted
            | ProxyError::LocalResources
            | ProxyError::RouteTooLarge
            | ProxyError::DnsFailed => Side::Lopache,
            ProxyError::NoLiveBackend
            | ProxyError::UpstreamConnect
            | ProxyError::UpstreamFailed
            | ProxyError::BadUpstreamResponse
            | ProxyError::UpstreamTimeout => Side::Upstream,
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
    fn status_and_side() {
        assert_eq!(
            (
                ProxyError::UnknownFrontend.status(),
                ProxyError::UnknownFrontend.side()
            ),
            (400, Side::Client)
        );
        assert_eq!(ProxyError::RoutingUnavailable.status(), 503);
        assert_eq!(
            (
                ProxyError::UpstreamTimeout.status(),
                ProxyError::UpstreamTimeout.side()
            ),
            (504, Side::Upstream)
        );
        assert_eq!(ProxyError::NoLiveBackend.status(), 502);
        // lopache's own shortages are never blamed on a backend.
        for e in [ProxyError::PoolExhausted, ProxyError::LocalResources] {
            assert_eq!((e.status(), e.side()), (503, Side::Lopache), "{e}");
        }
        assert_eq!(
            (
                ProxyError::BodyTimeout.status(),
                ProxyError::BodyTimeout.side()
            ),
            (408, Side::Client)
        );
    }
}
