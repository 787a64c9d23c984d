//! A real WebSocket echo backend (tungstenite) and client helpers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::WAIT;

/// Room for the 16 MiB messages the tests send.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Echoes text and binary messages. The text `close-me` makes it start the
/// close handshake itself (code 4000, reason "server bye").
pub struct WsEcho {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl WsEcho {
    pub fn start() -> WsEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || echo(stream));
            }
        });
        WsEcho { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn echo(stream: TcpStream) {
    let Ok(mut ws) = tungstenite::accept_with_config(stream, Some(config())) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "close-me" => {
                let frame = CloseFrame {
                    code: CloseCode::Library(4000),
                    reason: "server bye".into(),
                };
                let _ = ws.close(Some(frame));
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Opens a WebSocket through the proxy at `proxy` for virtual host `host`.
pub fn connect(proxy: SocketAddr, host: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!("ws://{host}/socket").into_client_request().unwrap();
    let (ws, response) = tungstenite::client::client_with_config(request, stream, Some(config()))
        .unwrap_or_else(|e| panic!("handshake through lopache failed: {e}"));
    assert_eq!(response.status(), 101);
    ws
}
