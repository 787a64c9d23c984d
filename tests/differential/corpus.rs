//! The adversarial request corpus of the differential test: the RFC 9112
//! framing matrix (Content-Length x Transfer-Encoding in their odd forms),
//! chunk-line and trailer variants, head-level oddities, `Connection` naming
//! what it must not remove, pipelining, and seeded mutations of all of
//! these. `{H}` stands for the Host, `{T}` for the case's own target
//! prefix, so whatever a backend reports can be traced to its case. Most
//! cases carry a second request hidden where a lenient parser would find it.

/// One case: a name and the bytes a client sends (with placeholders).
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
}

const HIDDEN: &str = "GET {T}/smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n";

/// A chunked body of "hello" followed by the hidden request.
fn chunked_hello() -> String {
    format!("5\r\nhello\r\n0\r\n\r\n{HIDDEN}")
}

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let add = |out: &mut Vec<Case>, name: String, bytes: Vec<u8>| out.push(Case { name, bytes });

    // 1. Content-Length x Transfer-Encoding, each in odd forms.
    let lengths = [
        None,
        Some("5"),
        Some("5, 5"),
        Some("5,6"),
        Some("+5"),
        Some("-5"),
        Some(" 5"),
        Some("05"),
        Some("0x5"),
        Some("5\t"),
        Some("1e1"),
        Some("99999999999999999999"),
        Some(""),
    ];
    let codings = [
        None,
        Some("chunked"),
        Some("Chunked"),
        Some(" chunked"),
        Some(",chunked"),
        Some("chunked,"),
        Some("chunked, chunked"),
        Some("gzip, chunked"),
        Some("chunked, gzip"),
        Some("identity"),
        Some("chunked;x=1"),
        Some("\"chunked\""),
        Some("chunk"),
        Some("xchunked"),
        Some("chunked\u{b}"),
        Some("identity, chunked"),
    ];
    for (i, cl) in lengths.iter().enumerate() {
        for (j, te) in codings.iter().enumerate() {
            let mut head = String::from("POST {T} HTTP/1.1\r\nHost: {H}\r\n");
            if let Some(v) = cl {
                head += &format!("Content-Length: {v}\r\n");
            }
            if let Some(v) = te {
                head += &format!("Transfer-Encoding: {v}\r\n");
            }
            let body = if te.is_some() {
                chunked_hello()
            } else {
                format!("hello{HIDDEN}")
            };
            add(
                &mut out,
                format!("cl{i}-te{j}"),
                format!("{head}\r\n{body}").into_bytes(),
            );
        }
    }

    // 2. Duplicated and disguised framing fields.
    let framing_fields = [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5\r\nContent-Length: 5",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding\t: chunked",
        " Transfer-Encoding: chunked",
        "Transfer_Encoding: chunked",
        "Transfer-Encoding: chunked\r\n x",
        "X: y\r\n Transfer-Encoding: chunked",
        "Content_Length: 5",
        "Content-Length: 5\r\n 0",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding:chunked",
        "Transfer-Encoding: \u{e9}chunked",
        "Transfer-Encoding: chunked\r",
        "Content-Length: 5\rX: y",
    ];
    for (i, f) in framing_fields.iter().enumerate() {
        let body = if f.contains("chunked") {
            chunked_hello()
        } else {
            format!("hello{HIDDEN}")
        };
        add(
            &mut out,
            format!("fields{i}"),
            format!("POST {{T}} HTTP/1.1\r\nHost: {{H}}\r\n{f}\r\n\r\n{body}").into_bytes(),
        );
    }

    // 3. Chunk size lines, data terminators and last chunks.
    let size_lines = [
        "5",
        "05",
        "5;e",
        "5;e=v",
        "5 ;e",
        "5\t;e",
        "5;e=\"q;\\\"x\"",
        "5 xyz",
        "5 ",
        "5\t",
        "0x5",
        "+5",
        "-5",
        "5;",
        "5;e=",
        "5;e=v w",
        "5;e=\"open",
        "fffffffffffffffff",
        "0000000000000000000005",
        "5\u{0}",
    ];
    for (i, line) in size_lines.iter().enumerate() {
        add(
            &mut out,
            format!("size{i}"),
            format!(
                "POST {{T}} HTTP/1.1\r\nHost: {{H}}\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nhello\r\n0\r\n\r\n{HIDDEN}"
            )
            .into_bytes(),
        );
    }
    let endings = [
        ("lf-size", "5\nhello\r\n0\r\n\r\n"),
        ("lf-data", "5\r\nhello\n0\r\n\r\n"),
        ("no-crlf", "5\r\nhello0\r\n\r\n"),
        ("extra-data", "5\r\nhelloXX\r\n0\r\n\r\n"),
        ("cr-cr", "5\r\r\nhello\r\n0\r\n\r\n"),
        ("lf-last", "5\r\nhello\r\n0\n\n"),
        ("last-ext", "5\r\nhello\r\n0;x=1\r\n\r\n"),
        ("last-00", "5\r\nhello\r\n00\r\n\r\n"),
        ("trailer", "5\r\nhello\r\n0\r\nT: v\r\n\r\n"),
        ("trailers", "5\r\nhello\r\n0\r\nA: 1\r\nB: 2\r\n\r\n"),
        ("trailer-fold", "5\r\nhello\r\n0\r\nT: v\r\n w\r\n\r\n"),
        ("trailer-space", "5\r\nhello\r\n0\r\nT : v\r\n\r\n"),
        ("trailer-nocolon", "5\r\nhello\r\n0\r\nT\r\n\r\n"),
        (
            "trailer-cl",
            "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
        ),
        (
            "trailer-te",
            "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        ("trailer-lf", "5\r\nhello\r\n0\r\nT: v\n\r\n"),
        ("short-data", "6\r\nhello\r\n0\r\n\r\n"),
        ("long-data", "4\r\nhello\r\n0\r\n\r\n"),
        ("two-chunks", "2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"),
        ("empty-chunk", "0\r\n\r\n"),
    ];
    for (name, body) in endings {
        add(
            &mut out,
            format!("end-{name}"),
            format!(
                "POST {{T}} HTTP/1.1\r\nHost: {{H}}\r\nTransfer-Encoding: chunked\r\n\r\n{body}{HIDDEN}"
            )
            .into_bytes(),
        );
    }

    // 4. Head-level oddities.
    let heads = [
        ("bare-lf", "GET {T} HTTP/1.1\nHost: {H}\n\n"),
        ("mixed-lf", "GET {T} HTTP/1.1\r\nHost: {H}\n\r\n"),
        ("bare-cr", "GET {T} HTTP/1.1\rHost: {H}\r\n\r\n"),
        ("cr-in-value", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX: a\rb\r\n\r\n"),
        ("nul-in-value", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX: a\u{0}b\r\n\r\n"),
        ("obs-fold", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX: a\r\n b\r\n\r\n"),
        ("space-colon", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX : a\r\n\r\n"),
        ("leading-crlf", "\r\n\r\nGET {T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("double-space", "GET  {T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("tab-sep", "GET\t{T}\tHTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("http10", "GET {T} HTTP/1.0\r\nHost: {H}\r\n\r\n"),
        ("http10-ka", "GET {T} HTTP/1.0\r\nHost: {H}\r\nConnection: keep-alive\r\n\r\n{HIDDEN}"),
        ("http10-te", "POST {T} HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("http12", "GET {T} HTTP/1.2\r\nHost: {H}\r\n\r\n"),
        ("http2", "GET {T} HTTP/2.0\r\nHost: {H}\r\n\r\n"),
        ("http09", "GET {T}\r\n\r\n"),
        ("lower-method", "get {T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("odd-method", "PURGE {T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("method-chars", "G(ET {T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("space-target", "GET {T} x HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("absolute", "GET http://{H}{T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("absolute-other", "GET http://other.example{T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("no-host", "GET {T} HTTP/1.1\r\n\r\n"),
        ("two-hosts", "GET {T} HTTP/1.1\r\nHost: {H}\r\nHost: other.example\r\n\r\n"),
        ("host-port", "GET {T} HTTP/1.1\r\nHost: {H}:80\r\n\r\n"),
        ("host-space", "GET {T} HTTP/1.1\r\nHost:  {H} \r\n\r\n"),
        ("host-at", "GET {T} HTTP/1.1\r\nHost: x@{H}\r\n\r\n"),
        ("empty-name", "GET {T} HTTP/1.1\r\nHost: {H}\r\n: v\r\n\r\n"),
        ("utf8-name", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX\u{e9}: v\r\n\r\n"),
        ("obs-text", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX: caf\u{e9}\r\n\r\n"),
        ("del-in-value", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX: a\u{7f}b\r\n\r\n"),
        ("long-value", "GET {T} HTTP/1.1\r\nHost: {H}\r\nX: LONG\r\n\r\n"),
        ("connect", "CONNECT {H}:443 HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("options-star", "OPTIONS * HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("head", "HEAD {T} HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("get-with-body", "GET {T} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5\r\n\r\nhello{HIDDEN}"),
    ];
    for (name, raw) in heads {
        let raw = raw
            .replace("{HIDDEN}", HIDDEN)
            .replace("LONG", &"v".repeat(8000));
        add(&mut out, format!("head-{name}"), raw.into_bytes());
    }

    // 5. Connection naming what frames, routes or identifies the request.
    let named = [
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "X-Forwarded-For",
        "X-Real-IP",
        "content-length, transfer-encoding, host",
        "close, Content-Length",
        "Keep-Alive, Upgrade",
        "X-Custom",
        "Expect",
    ];
    for (i, n) in named.iter().enumerate() {
        add(
            &mut out,
            format!("conn-cl{i}"),
            format!(
                "POST {{T}} HTTP/1.1\r\nHost: {{H}}\r\nConnection: {n}\r\nX-Custom: 1\r\nContent-Length: 5\r\n\r\nhello{HIDDEN}"
            )
            .into_bytes(),
        );
        add(
            &mut out,
            format!("conn-te{i}"),
            format!(
                "POST {{T}} HTTP/1.1\r\nHost: {{H}}\r\nConnection: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                chunked_hello()
            )
            .into_bytes(),
        );
    }

    // 6. Pipelining, expectations and upgrades.
    let flows = [
        ("pipeline", "GET {T}/1 HTTP/1.1\r\nHost: {H}\r\n\r\nPOST {T}/2 HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\n\r\nabcGET {T}/3 HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("pipeline-chunked", "POST {T}/1 HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET {T}/2 HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("expect", "POST {T} HTTP/1.1\r\nHost: {H}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"),
        ("expect-other", "POST {T} HTTP/1.1\r\nHost: {H}\r\nExpect: something\r\nContent-Length: 5\r\n\r\nhello"),
        ("upgrade-h2c", "GET {T} HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"),
        ("upgrade-post", "POST {T} HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello"),
        ("close-then-more", "GET {T} HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\nGET {T}/after HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("zero-length", "POST {T} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 0\r\n\r\n{HIDDEN}"),
        ("large-body", "POST {T} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 70000\r\n\r\nBIG"),
        ("large-chunked", "POST {T} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\nBIG\r\n0\r\n\r\n"),
    ];
    for (name, raw) in flows {
        let raw = raw
            .replace("{HIDDEN}", HIDDEN)
            .replace("BIG", &"b".repeat(70000));
        add(&mut out, format!("flow-{name}"), raw.into_bytes());
    }

    // 7. Seeded mutations of everything above: framing-relevant bytes
    //    flipped, duplicated, cased or padded.
    let bases: Vec<Vec<u8>> = out.iter().map(|c| c.bytes.clone()).collect();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const INSERTS: [&[u8]; 10] = [
        b" ", b"\t", b"\r", b"\n", b"\r\n", b",", b";", b"0", b"\x00", b"\r\n ",
    ];
    for m in 0..120 {
        let base = &bases[(next() as usize) % bases.len()];
        let mut bytes = base.clone();
        // Mutate inside the head or the first line of the body, where framing lives.
        let span = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |p| (p + 12).min(bytes.len()));
        let at = (next() as usize) % span.max(1);
        match next() % 4 {
            0 => {
                let ins = INSERTS[(next() as usize) % INSERTS.len()];
                bytes.splice(at..at, ins.iter().copied());
            }
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 if at < bytes.len() => bytes[at] ^= 0x20,
            _ => {
                // Duplicate the header line at `at`.
                let start = bytes[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                if let Some(end) = bytes[at..].iter().position(|&b| b == b'\n') {
                    let line = bytes[start..at + end + 1].to_vec();
                    bytes.splice(start..start, line);
                }
            }
        }
        // Placeholders must survive the mutation to stay traceable.
        if String::from_utf8_lossy(&bytes).contains("{T}") {
            add(&mut out, format!("mut{m}"), bytes);
        }
    }
    out
}
