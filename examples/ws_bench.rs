//! WebSocket benchmark helper for bench/websocket.sh (not part of lopache).
//!
//!   ws_bench serve PORT                          echo server (thread per connection)
//!   ws_bench load HOST:PORT VHOST CONNS SECS SIZE
//!       CONNS connections each send a SIZE-byte text message and wait for its
//!       echo, in a loop, for SECS seconds; prints messages/s, p50 and p99.
//!   ws_bench hold HOST:PORT VHOST CONNS FLAG
//!       opens CONNS tunnels, echoes one 128-byte message on each, creates
//!       the file FLAG and keeps the tunnels open (idle) until FLAG is gone.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

fn serve(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let Ok(mut ws) = tungstenite::accept(stream) else {
                return;
            };
            while let Ok(m) = ws.read() {
                if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                    return;
                }
            }
        });
    }
}

fn load(addr: &str, vhost: &str, conns: usize, secs: u64, size: usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (addr, vhost) = (addr.to_string(), vhost.to_string());
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).expect("connect");
                let _ = stream.set_nodelay(true);
                let request = format!("ws://{vhost}/").into_client_request().unwrap();
                let (mut ws, _) = tungstenite::client(request, stream).expect("handshake");
                let payload = "x".repeat(size);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    ws.send(Message::text(payload.clone())).expect("send");
                    match ws.read() {
                        Ok(Message::Text(t)) if t.len() == size => latencies.push(start.elapsed()),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                let _ = ws.close(None);
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{:.0} {:.3} {:.3}",
        all.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99)
    );
}

fn hold(addr: &str, vhost: &str, conns: usize, flag: &str) {
    let payload = "x".repeat(128);
    let tunnels: Vec<_> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect");
            let request = format!("ws://{vhost}/").into_client_request().unwrap();
            let (mut ws, _) = tungstenite::client(request, stream).expect("handshake");
            ws.send(Message::text(payload.clone())).expect("send");
            match ws.read() {
                Ok(Message::Text(t)) if t.len() == payload.len() => ws,
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    std::fs::write(flag, b"").expect("flag");
    while std::path::Path::new(flag).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(tunnels);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(args[1].parse().expect("port")),
        Some("load") => load(
            &args[1],
            &args[2],
            args[3].parse().expect("conns"),
            args[4].parse().expect("seconds"),
            args[5].parse().expect("size"),
        ),
        Some("hold") => hold(&args[1], &args[2], args[3].parse().expect("conns"), &args[4]),
        _ => eprintln!(
            "usage: ws_bench serve PORT | load HOST:PORT VHOST CONNS SECS SIZE | hold HOST:PORT VHOST CONNS FLAG"
        ),
    }
}
