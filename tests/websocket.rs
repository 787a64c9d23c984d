//! WebSocket tunnels through the real binary against a real echo backend:
//! message sizes, fragmentation, ping/pong, close handshakes, concurrency,
//! early frames, refused upgrades, descriptor leaks and the idle timeout.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::ws::{self, WsEcho};
use harness::{wait_for, Backend, Lopache, RawConn, Redis, Reply};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::Message;

fn setup(backend_url: &str, server: &str) -> (Redis, Lopache) {
    let redis = Redis::start();
    redis.frontend("", "ws.example", "ws", &[backend_url.to_string()]);
    let proxy = Lopache::start(&redis.url(), server);
    (redis, proxy)
}

#[test]
fn text_and_binary_echo_at_every_size() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "");
    let mut client = ws::connect(proxy.addr, "ws.example");
    for size in [0usize, 125, 126, 64 * 1024, 16 * 1024 * 1024] {
        let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        client.send(Message::text(text.clone())).unwrap();
        assert_eq!(
            client.read().unwrap(),
            Message::text(text),
            "text of {size} bytes"
        );
        let binary: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        client.send(Message::binary(binary.clone())).unwrap();
        assert_eq!(
            client.read().unwrap(),
            Message::binary(binary),
            "binary of {size} bytes"
        );
    }
}

#[test]
fn fragmented_messages_ping_pong_and_close_with_code() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "");
    let mut client = ws::connect(proxy.addr, "ws.example");
    client
        .send(Message::Frame(Frame::message(
            "frag",
            OpCode::Data(Data::Text),
            false,
        )))
        .unwrap();
    client
        .send(Message::Frame(Frame::message(
            "men",
            OpCode::Data(Data::Continue),
            false,
        )))
        .unwrap();
    client
        .send(Message::Frame(Frame::message(
            "ted",
            OpCode::Data(Data::Continue),
            true,
        )))
        .unwrap();
    assert_eq!(client.read().unwrap(), Message::text("fragmented"));
    client.send(Message::Ping("are you there".into())).unwrap();
    assert_eq!(
        client.read().unwrap(),
        Message::Pong("are you there".into())
    );
    let frame = CloseFrame {
        code: CloseCode::Library(4321),
        reason: "client bye".into(),
    };
    client.close(Some(frame.clone())).unwrap();
    match client.read() {
        Ok(Message::Close(Some(echoed))) => assert_eq!(echoed, frame),
        other => panic!("expected the close frame back, got {other:?}"),
    }
}

#[test]
fn backend_initiated_close_reaches_the_client_intact() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "");
    let mut client = ws::connect(proxy.addr, "ws.example");
    client.send(Message::text("close-me")).unwrap();
    match client.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!(
                (f.code, f.reason.as_str()),
                (CloseCode::Library(4000), "server bye")
            )
        }
        other => panic!("expected the server's close frame, got {other:?}"),
    }
}

#[test]
fn two_hundred_concurrent_tunnels() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "");
    let addr = proxy.addr;
    let threads: Vec<_> = (0..200)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = ws::connect(addr, "ws.example");
                for i in 0..10 {
                    let msg = format!("tunnel {t} message {i} {}", "x".repeat(i * 100));
                    client.send(Message::text(msg.clone())).unwrap();
                    assert_eq!(client.read().unwrap(), Message::text(msg));
                }
                client.close(None).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a tunnel failed");
    }
}

/// A masked client frame (RFC 6455 section 5.3) carrying `payload` as text.
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

const HANDSHAKE: &str =
    "GET /socket HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[test]
fn first_frame_in_the_handshake_packet_arrives_after_the_101() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "");
    let mut conn = RawConn::connect(proxy.addr);
    let mut packet = HANDSHAKE.as_bytes().to_vec();
    packet.extend_from_slice(&masked_text_frame(b"early bird"));
    conn.send(&packet);
    let head = conn.read_head();
    assert_eq!(head.status, 101);
    assert_eq!(
        head.header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // The server's echo: an unmasked text frame.
    let mut got = conn.take_buffered();
    while got.len() < 12 {
        let mut chunk = [0u8; 64];
        let n = conn.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "tunnel closed before the echo");
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&got[..12], b"\x81\x0aearly bird");
}

#[test]
fn refused_upgrades_are_plain_responses_and_http_continues() {
    for (status, body) in [(426u16, "upgrade elsewhere"), (200, "no websockets here")] {
        let backend = Backend::start(move |r| {
            if r.header("upgrade").is_some() {
                Reply::with_headers(status, &[("X-Was-Upgrade", "yes")], body)
            } else {
                Reply::ok("plain http")
            }
        });
        let (_redis, proxy) = setup(&backend.url(), "");
        let mut conn = RawConn::connect(proxy.addr);
        conn.send(HANDSHAKE.as_bytes());
        let r = conn.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (status, body));
        // The connection still speaks HTTP: a raw request is parsed as one.
        conn.send(b"GET /next HTTP/1.1\r\nHost: ws.example\r\n\r\n");
        let r = conn.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "plain http"));
        let got = backend.received();
        assert_eq!(got[0].header("upgrade"), Some("websocket"));
        assert_eq!(got[0].header("connection"), Some("upgrade"));
        assert_eq!(got[0].header("x-forwarded-for"), Some("127.0.0.1"));
    }
}

#[test]
fn other_upgrade_tokens_are_served_as_plain_http() {
    let backend = Backend::start(|r| Reply::ok(&format!("upgrade={:?}", r.header("upgrade"))));
    let (_redis, proxy) = setup(&backend.url(), "");
    let r = harness::request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "upgrade=None"));
    let r = harness::request(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "upgrade=None"),
        "only GET opens a WebSocket"
    );
}

#[test]
fn unsolicited_101_is_a_bad_gateway() {
    let backend = Backend::start(|_| {
        Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n".to_vec())
    });
    let (_redis, proxy) = setup(&backend.url(), "");
    assert_eq!(harness::get(proxy.addr, "ws.example", "/").status, 502);
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(HANDSHAKE.as_bytes());
    assert_eq!(
        conn.read_response(false).status,
        502,
        "a 101 to another protocol must not tunnel"
    );
}

/// The proxy's descriptor count once a first tunnel has come and gone (Redis
/// connected, nothing else open), polled until it holds still.
fn fd_baseline(proxy: &Lopache) -> usize {
    // Warm up: Redis connected, one full tunnel opened and closed.
    let mut c = ws::connect(proxy.addr, "ws.example");
    c.send(Message::text("warm")).unwrap();
    c.read().unwrap();
    c.close(None).unwrap();
    while c.read().is_ok() {}
    drop(c);
    wait_for("fds to settle", || {
        let a = proxy.fd_count();
        std::thread::sleep(Duration::from_millis(50));
        (proxy.fd_count() == a).then_some(a)
    })
}

fn assert_fds_return(proxy: &Lopache, baseline: usize, what: &str) {
    let deadline = Instant::now() + harness::WAIT;
    while proxy.fd_count() != baseline {
        assert!(
            Instant::now() < deadline,
            "{what}: fds {} != baseline {baseline}",
            proxy.fd_count()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn no_descriptor_leaks_whoever_closes() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "workers = 1");
    let baseline = fd_baseline(&proxy);

    // Backend closes first.
    let mut c = ws::connect(proxy.addr, "ws.example");
    c.send(Message::text("close-me")).unwrap();
    assert!(matches!(c.read(), Ok(Message::Close(_))));
    while c.read().is_ok() {}
    drop(c);
    assert_fds_return(&proxy, baseline, "backend closed first");

    // Client closes first.
    let mut c = ws::connect(proxy.addr, "ws.example");
    c.send(Message::text("hi")).unwrap();
    c.read().unwrap();
    c.close(None).unwrap();
    while c.read().is_ok() {}
    drop(c);
    assert_fds_return(&proxy, baseline, "client closed first");

    // Client resets mid-frame (SO_LINGER 0 turns close into RST).
    let mut raw = TcpStream::connect(proxy.addr).unwrap();
    raw.write_all(HANDSHAKE.as_bytes()).unwrap();
    let mut head = [0u8; 1024];
    let n = raw.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    raw.write_all(&masked_text_frame(b"this frame is cut")[..8])
        .unwrap();
    socket2::SockRef::from(&raw)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(raw);
    assert_fds_return(&proxy, baseline, "client reset mid-frame");
}

#[test]
fn half_close_passes_fin_while_the_other_direction_flows() {
    // A backend that reads until the client's FIN, then answers and closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        s.write_all(format!("got {} bytes after FIN", rest.len()).as_bytes())
            .unwrap();
    });
    let (_redis, proxy) = setup(&format!("http://{addr}"), "");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(HANDSHAKE.as_bytes());
    assert_eq!(conn.read_head().status, 101);
    conn.send(b"0123456789");
    conn.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = conn.take_buffered();
    conn.stream.read_to_end(&mut answer).unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), "got 10 bytes after FIN");
}

#[test]
fn idle_timeout_closes_a_silent_tunnel() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "websocket_idle_timeout = 1");
    let mut client = ws::connect(proxy.addr, "ws.example");
    client.send(Message::text("still here")).unwrap();
    assert_eq!(client.read().unwrap(), Message::text("still here"));
    let silent_since = Instant::now();
    // Nothing is sent; the proxy must close the tunnel (the read ends).
    assert!(client.read().is_err(), "tunnel stayed open");
    let idle = silent_since.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
}

#[test]
fn small_messages_copy_and_bulk_splices_on_io_uring_only() {
    let echo = WsEcho::start();
    let (_redis, proxy) = setup(&echo.url(), "debug = true");
    let mut client = ws::connect(proxy.addr, "ws.example");
    client.send(Message::text("which path")).unwrap();
    assert_eq!(client.read().unwrap(), Message::text("which path"));
    // The line is logged before any byte is relayed, but reaches the
    // harness through a pipe and a reader thread: wait for it.
    let log = wait_for("the tunnel log line", || {
        let log = proxy.stderr();
        log.contains("tunnel opened via").then_some(log)
    });
    let io_uring = log.contains(", io_uring)");
    let want = if io_uring {
        "tunnel opened via copy, splice for bulk"
    } else {
        "tunnel opened via copy only"
    };
    assert!(log.contains(want), "expected {want:?} in:\n{log}");
    assert!(
        !log.contains("splicing the rest"),
        "a small message spliced:\n{log}"
    );

    // A 4 MiB message arrives in reads far above the bulk threshold.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    client.send(Message::binary(big.clone())).unwrap();
    assert_eq!(client.read().unwrap().into_data(), big);
    client.send(Message::text("after bulk")).unwrap();
    assert_eq!(client.read().unwrap(), Message::text("after bulk"));
    if io_uring {
        // Both directions carried the bulk message, so both switch.
        wait_for("both directions to splice", || {
            (proxy.stderr().matches("splicing the rest").count() == 2).then_some(())
        });
    } else {
        let log = proxy.stderr();
        assert!(!log.contains("splicing the rest"), "epoll spliced:\n{log}");
    }
}
