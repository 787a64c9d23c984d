//! Large bodies stream through with bounded memory: a 256 MB upload and a
//! 256 MB download, each checked byte for byte, with the proxy's peak RSS
//! (VmHWM from /proc) staying under 64 MB.

mod harness;

use std::io::{Read, Write};

use harness::backend::{fnv, pattern_block, FNV_START};
use harness::{Backend, Lopache, RawConn, Redis, Reply};

const SIZE: u64 = 256 * 1024 * 1024;
const RSS_LIMIT_KB: u64 = 64 * 1024;

fn proxy_for(backend: &Backend) -> (Redis, Lopache) {
    let redis = Redis::start();
    redis.frontend("", "big.example", "big", &[backend.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    (redis, proxy)
}

/// The hash the pattern source produces over `len` bytes.
fn expected_hash(len: u64) -> u64 {
    let block = pattern_block();
    let mut h = FNV_START;
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h = fnv(h, &block[..n]);
        left -= n as u64;
    }
    h
}

#[test]
fn upload_of_256_mb_streams_with_bounded_memory() {
    let backend = Backend::start(|r| Reply::ok(&r.body_len.to_string()));
    let (_redis, proxy) = proxy_for(&backend);
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(
        format!("POST /up HTTP/1.1\r\nHost: big.example\r\nContent-Length: {SIZE}\r\n\r\n")
            .as_bytes(),
    );
    let block = pattern_block();
    let mut left = SIZE;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        conn.stream.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    let r = conn.read_response(false);
    assert_eq!((r.status, r.text()), (200, SIZE.to_string()));
    let got = &backend.received()[0];
    assert_eq!(got.body_hash, expected_hash(SIZE), "upload corrupted");
    let peak = proxy.peak_rss_kb();
    eprintln!("peak RSS {peak} KiB");
    assert!(peak < RSS_LIMIT_KB, "peak RSS {peak} KiB");
}

#[test]
fn chunked_upload_streams_too() {
    let backend = Backend::start(|r| Reply::ok(&r.body_len.to_string()));
    let (_redis, proxy) = proxy_for(&backend);
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"POST /up HTTP/1.1\r\nHost: big.example\r\nTransfer-Encoding: chunked\r\n\r\n");
    let block = pattern_block();
    let total: u64 = 64 * 1024 * 1024;
    let mut sent = 0;
    while sent < total {
        conn.stream
            .write_all(format!("{:x}\r\n", block.len()).as_bytes())
            .unwrap();
        conn.stream.write_all(&block).unwrap();
        conn.stream.write_all(b"\r\n").unwrap();
        sent += block.len() as u64;
    }
    conn.send(b"0\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.text(), total.to_string());
    assert_eq!(backend.received()[0].body_hash, expected_hash(total));
}

fn download(chunked: bool) {
    let backend = Backend::start(move |_| Reply::Stream { len: SIZE, chunked });
    let (_redis, proxy) = proxy_for(&backend);
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"GET /down HTTP/1.1\r\nHost: big.example\r\nConnection: close\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    // Stream the body through a decoder without keeping it.
    let mut hash = FNV_START;
    let mut total = 0u64;
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    // The head read may already hold the first body bytes.
    let mut incoming = conn.take_buffered();
    loop {
        if incoming.is_empty() {
            let n = conn.stream.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            incoming.extend_from_slice(&chunk[..n]);
        }
        if chunked {
            raw.append(&mut incoming);
            // Decode complete chunks from the front of `raw`.
            while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap(), 16).unwrap();
                if size == 0 {
                    raw.clear();
                    break;
                }
                if raw.len() < eol + 2 + size + 2 {
                    break;
                }
                hash = fnv(hash, &raw[eol + 2..eol + 2 + size]);
                total += size as u64;
                raw.drain(..eol + 2 + size + 2);
            }
        } else {
            hash = fnv(hash, &incoming);
            total += incoming.len() as u64;
            incoming.clear();
        }
    }
    assert_eq!(total, SIZE);
    assert_eq!(hash, expected_hash(SIZE), "download corrupted");
    let peak = proxy.peak_rss_kb();
    eprintln!("peak RSS {peak} KiB");
    assert!(peak < RSS_LIMIT_KB, "peak RSS {peak} KiB");
}

#[test]
fn download_of_256_mb_streams_with_bounded_memory() {
    download(false);
}

#[test]
fn chunked_download_of_256_mb_streams_with_bounded_memory() {
    download(true);
}
