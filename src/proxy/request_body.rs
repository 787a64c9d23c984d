//! Request bodies are read before a backend connection is taken, up to
//! `server.request_buffer_bytes` and within the shard's buffer budget, so a
//! client that trickles its body never holds a backend's connection.

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::client::Client;
use super::error::ProxyError;
use super::exchange::{Exchange, Next};
use super::reply::{refuse, reply_error, send_continue};
use crate::http::BodyKind;
use crate::io::budget::Charge;
use crate::io::pump::{BodyRelay, ChunkedMode};
use crate::io::timed::IoFailure;
use crate::log_debug;
use crate::observe::metrics;
use crate::shard::Shard;

/// The least a body read reserves at a time.
const MIN_BODY_READ: usize = 1024;

/// Reads the request body, up to `server.request_buffer_bytes`, before an
/// upstream connection is taken (nginx's `proxy_request_buffering`,
/// HAProxy's `http-buffer-request`): a client that trickles its body holds
/// only its own connection, never one of the backend's `max_sockets`.
/// Larger bodies stream once that much has arrived. `Err`: the request was
/// answered (or the client left) and the connection goes on as returned.
pub(super) async fn buffer_request_body<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
) -> Result<(), Next> {
    let cfg = &shard.config;
    if exchange.body_buffered || cfg.request_buffer_bytes == 0 {
        return Ok(());
    }
    // The client waits for this before sending the body we wait for.
    if exchange.expect_continue && !send_continue(shard, client, exchange).await {
        return Err(Next::Close);
    }
    let want = match exchange.body {
        BodyKind::Length(n) => usize::try_from(n).map_or(usize::MAX, |n| n),
        _ => usize::MAX,
    }
    .min(cfg.request_buffer_bytes);
    let mut charge = Charge::new(&shard.buffer_budget);
    if !charge.room_for(want) {
        // The shard holds all it may for slow peers: this body streams.
        exchange.body_buffered = true;
        return Ok(());
    }
    charge.add(want);
    exchange.body_charge = Some(charge);
    let deadline = crate::clock::from_now(cfg.client_body_timeout);
    let mut relay = BodyRelay::new(exchange.body, ChunkedMode::Verbatim, &cfg.limits);
    let mut scanned = 0;
    loop {
        match relay.buffered(&client.body_bytes()[scanned..]) {
            Ok((n, next)) => {
                relay = next;
                scanned += n;
            }
            Err(e) => {
                log_debug!("invalid chunked request body: {e}");
                return Err(refuse(shard, client, 400).await);
            }
        }
        if relay.is_done() || scanned >= cfg.request_buffer_bytes {
            exchange.body_buffered = true;
            return Ok(());
        }
        let left = deadline.saturating_duration_since(crate::clock::now());
        // Room for what is still to come, and no more: a body read in 32 KiB
        // steps would double its buffer past what it needs.
        let missing = want.saturating_sub(scanned).max(MIN_BODY_READ);
        match client.read_body(missing, left).await {
            Ok(0) | Err(IoFailure::Io(_)) => return Err(Next::Close),
            Ok(_) => {}
            Err(IoFailure::Timeout) => {
                metrics::add(&shard.metrics.client_timeouts, 1);
                let next = reply_error(shard, client, exchange, ProxyError::BodyTimeout, None);
                return Err(Box::pin(next).await);
            }
        }
    }
}
