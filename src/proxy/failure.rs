//! What went wrong in one attempt at a backend, and the one place that
//! decides what follows: whether the backend is marked dead, whether the
//! request may go to another backend, and which error the client gets if it
//! may not. (In the spirit of pingora's `ErrorSource` and `RetryType`: the
//! failure says where it happened; the decision reads only that.)

use super::error::ProxyError;

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// lopache or the routing data failed, not the backend (an unusable URL,
    /// a name that did not resolve, a full pool, lopache's own descriptors):
    /// answered with this error, nothing marked, nothing retried.
    NotTheBackend(ProxyError),
    /// No connection could be opened.
    Connect,
    /// Writing the request head failed; `reused`: on a pooled connection.
    Send { reused: bool },
    /// The connection closed before a response head; `reused` as above.
    ClosedBeforeAnswer { reused: bool },
    /// No response head within `response_timeout`.
    Timeout,
    /// A response head or body framing lopache cannot relay.
    BadResponse,
    /// The backend stopped taking the request body and sent no answer.
    BodyRefused,
}

/// What follows from a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Tell the shard and Redis the backend is dead.
    pub mark_dead: bool,
    /// Another backend may be tried (within `retry_on_error`).
    pub retry: bool,
}

impl Failure {
    /// The error page the client gets when no retry follows.
    pub fn error(self) -> ProxyError {
        match self {
            Failure::NotTheBackend(error) => error,
            Failure::Connect => ProxyError::UpstreamConnect,
            Failure::Send { .. } | Failure::ClosedBeforeAnswer { .. } | Failure::BodyRefused => {
                ProxyError::UpstreamFailed
            }
            Failure::Timeout => ProxyError::UpstreamTimeout,
            Failure::BadResponse => ProxyError::BadUpstreamResponse,
        }
    }

    /// `replayable`: the request is safe to send again after it may have
    /// reached the backend (an idempotent method without a body; the README's
    /// "Retries").
    pub fn verdict(self, replayable: bool) -> Verdict {
        let (mark_dead, retry) = match self {
            Failure::NotTheBackend(_) => (false, false),
            Failure::Connect => (true, true),
            // A pooled connection the backend had closed is not its fault,
            // and the request never reached it.
            Failure::Send { reused: true } => (false, true),
            Failure::Send { reused: false } => (true, replayable),
            // Closing an idle pooled connection is the backend's right; a
            // fresh one closed unanswered is a failing backend.
            Failure::ClosedBeforeAnswer { reused } => (!reused, replayable),
            // The request may be running on the backend: never sent twice.
            Failure::Timeout => (true, false),
            Failure::BadResponse => (false, false),
            // Closing on a body it refuses is a backend's right.
            Failure::BodyRefused => (false, false),
        };
        Verdict { mark_dead, retry }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_one_verdict_and_error() {
        use Failure::*;
        let none = NotTheBackend(ProxyError::PoolExhausted);
        // (failure, replayable) -> (mark dead, retry, status)
        let table = [
            (none, true, false, false, 503),
            (
                NotTheBackend(ProxyError::DnsFailed),
                true,
                false,
                false,
                502,
            ),
            (
                NotTheBackend(ProxyError::LocalResources),
                true,
                false,
                false,
                503,
            ),
            (Connect, false, true, true, 502),
            (Send { reused: true }, false, false, true, 502),
            (Send { reused: false }, true, true, true, 502),
            (Send { reused: false }, false, true, false, 502),
            (ClosedBeforeAnswer { reused: true }, true, false, true, 502),
            (
                ClosedBeforeAnswer { reused: true },
                false,
                false,
                false,
                502,
            ),
            (ClosedBeforeAnswer { reused: false }, true, true, true, 502),
            (
                ClosedBeforeAnswer { reused: false },
                false,
                true,
                false,
                502,
            ),
            (Timeout, true, true, false, 504),
            (BadResponse, true, false, false, 502),
            (BodyRefused, false, false, false, 502),
        ];
        for (failure, replayable, mark_dead, retry, status) in table {
            assert_eq!(
                failure.verdict(replayable),
                Verdict { mark_dead, retry },
                "{failure:?} replayable={replayable}"
            );
            assert_eq!(failure.error().status(), status, "{failure:?}");
        }
    }

    #[test]
    fn lopaches_own_failures_never_mark_a_backend() {
        for error in [
            ProxyError::BadBackendUrl,
            ProxyError::DnsFailed,
            ProxyError::PoolExhausted,
            ProxyError::LocalResources,
        ] {
            for replayable in [false, true] {
                let verdict = Failure::NotTheBackend(error).verdict(replayable);
                assert!(!verdict.mark_dead && !verdict.retry, "{error:?}");
            }
        }
    }
}
