//! A pub/sub subscription on a connection of its own (a subscribed
//! connection can carry nothing else). Used by the route cache to hear the
//! `dead` channel: any proxy that flags a backend publishes there.

use std::time::Duration;

use super::client::connect;
use super::codec::{encode_command, Reply};
use super::url::RedisUrl;
use crate::log_debug;

/// What the subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Subscribed (again): messages from now on will be seen.
    Subscribed,
    /// A message on the channel.
    Message(Vec<u8>),
    /// The connection was lost: messages may have been missed until the next
    /// `Subscribed`.
    Lost,
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A subscription silent this long is re-established (and reported lost),
/// which also notices a half-open connection.
const SILENCE: Duration = Duration::from_secs(3600);

/// Subscribes to `channel` on `url` for ever, reconnecting with back-off.
pub async fn subscribe(
    url: RedisUrl,
    channel: &'static [u8],
    timeout: Duration,
    mut on_event: impl FnMut(Event),
) {
    let mut pause = RETRY_MIN;
    loop {
        if let Ok(Ok(mut session)) = monoio::time::timeout(timeout, connect(&url, timeout)).await {
            let mut command = Vec::new();
            encode_command(&mut command, &[b"SUBSCRIBE", channel]);
            // Messages may follow the confirmation at once: not `exchange`,
            // which refuses bytes beyond the replies it asked for.
            let subscribed = match session.send(command, timeout).await {
                Ok(()) => session.read_replies(1, timeout).await.is_ok(),
                Err(_) => false,
            };
            if subscribed {
                pause = RETRY_MIN;
                on_event(Event::Subscribed);
                while let Ok(mut replies) = session.read_replies(1, SILENCE).await {
                    if let Some(payload) = replies.pop().and_then(message_payload) {
                        on_event(Event::Message(payload));
                    }
                }
                on_event(Event::Lost);
            }
        }
        log_debug!("subscription to {} lost; retrying", url.masked());
        monoio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// The payload of a `["message", channel, payload]` push.
fn message_payload(reply: Reply) -> Option<Vec<u8>> {
    let Reply::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 3 {
        return None;
    }
    let payload = parts.pop()?;
    let kind = parts.remove(0);
    match (kind, payload) {
        (Reply::BulkString(k), Reply::BulkString(p)) if k == b"message" => Some(p),
        _ => None,
    }
}
