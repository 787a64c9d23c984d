//! A DNS server for resolver tests, on UDP port 53 of a random 127/8 address
//! (glibc's resolv.conf cannot name a port). Names under `.lopache.test`:
//! `slow-*` are answered after [`SLOW_ANSWER`], `lag-*` after
//! [`LAG_ANSWER`], `stall-*` never, the rest at once; A queries get 127.0.0.1, AAAA queries no record; other names
//! NXDOMAIN. It counts the A queries per (full) name.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a `slow-*` name waits for its answer.
pub const SLOW_ANSWER: Duration = Duration::from_secs(3);
/// How long a `lag-*` name waits for its answer.
pub const LAG_ANSWER: Duration = Duration::from_millis(300);

pub struct FakeDns {
    pub addr: Ipv4Addr,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    answered: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
}

impl FakeDns {
    pub fn start() -> FakeDns {
        let socket = (0..100)
            .find_map(|_| {
                let addr = Ipv4Addr::new(
                    127,
                    fastrand::u8(1..255),
                    fastrand::u8(..),
                    fastrand::u8(1..255),
                );
                UdpSocket::bind((addr, 53)).ok()
            })
            .expect("a free 127/8 address for port 53 (run the tests as root)");
        let SocketAddr::V4(local) = socket.local_addr().unwrap() else {
            unreachable!()
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let dns = FakeDns {
            addr: *local.ip(),
            queries: Arc::default(),
            answered: Arc::default(),
            stop: Arc::default(),
        };
        let (queries, answered, stop) =
            (dns.queries.clone(), dns.answered.clone(), dns.stop.clone());
        let socket = Arc::new(socket);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Some((name, qtype, question_end)) = parse_query(&buf[..n]) else {
                    continue;
                };
                if qtype == 1 {
                    *queries.lock().unwrap().entry(name.clone()).or_default() += 1;
                }
                let reply = answer(&buf[..question_end], &name, qtype);
                let delay = if name.starts_with("stall-") {
                    continue;
                } else if name.starts_with("slow-") {
                    SLOW_ANSWER
                } else if name.starts_with("lag-") {
                    LAG_ANSWER
                } else {
                    Duration::ZERO
                };
                let (socket, answered) = (socket.clone(), answered.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let _ = socket.send_to(&reply, peer);
                    if qtype == 1 {
                        *answered.lock().unwrap().entry(name).or_default() += 1;
                    }
                });
            }
        });
        dns
    }

    /// A queries seen for `name`.
    pub fn queries(&self, name: &str) -> usize {
        self.queries.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// A queries answered for `name`.
    pub fn answered(&self, name: &str) -> usize {
        self.answered
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// `resolv.conf` text pointing at this server.
    pub fn resolv_conf(&self) -> String {
        format!("nameserver {}\noptions timeout:5 attempts:1\n", self.addr)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The query's name (lower case), type and the end of its question section.
fn parse_query(msg: &[u8]) -> Option<(String, u16, usize)> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let name = labels.join(".");
    Some((name, qtype, i + 4))
}

/// A reply to the query whose header and question are `question`.
fn answer(question: &[u8], name: &str, qtype: u16) -> Vec<u8> {
    let ours = name.ends_with(".lopache.test");
    let mut out = question.to_vec();
    out[2] = 0x81 | (question[2] & 0x01); // QR, opcode 0, RD copied
    out[3] = if ours { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
    out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if ours && qtype == 1 {
        out[7] = 1; // one answer
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    out
}
