//! Plain HTTP/1.0 over a TCP stream for checks against local services (no client crate).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// One request; returns the status and the body parsed as JSON (`Null` when it is not JSON).
/// `body` is sent as is with `content_type`.
pub fn request(
    method: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Value)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    let (host, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, payload) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (&raw[..], &[][..]),
    };
    let status = String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((
        status,
        serde_json::from_slice(payload).unwrap_or(Value::Null),
    ))
}

/// A JSON request that must answer 2xx; panics with the answer otherwise.
pub fn json(method: &str, url: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let (status, v) = request(method, url, "application/json", body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert!(
        (200..300).contains(&status),
        "{method} {url}: HTTP {status}: {v}"
    );
    v
}

/// The status of a GET, or `None` when nothing answers.
pub fn get_status(url: &str) -> Option<u16> {
    request("GET", url, "application/json", b"")
        .ok()
        .map(|(s, _)| s)
}

/// A GET's status and body as text, or `None` when nothing answers.
pub fn get_text(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
