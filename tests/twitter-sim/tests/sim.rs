//! The `twitter-sim` binary over raw HTTP/1.1: address line, bearer token, rules endpoints,
//! the stream (keep-alives, one connection at a time), the control endpoints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "sim-test-token";

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twitter-sim"))
        .args(["--port", "0", "--token", TOKEN])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr }
}

fn send(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Status and JSON body of a non-streaming request.
fn call(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = send(addr, method, path, token, body);
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const RULES: &str = "/2/tweets/search/stream/rules";

#[test]
fn rules_and_auth() {
    let sim = start(&["--rule", "cats=cats"]);
    let a = sim.addr.as_str();
    assert_eq!(call(a, "GET", RULES, None, "").0, 401);
    assert_eq!(call(a, "GET", RULES, Some("wrong"), "").0, 401);
    let (status, list) = call(a, "GET", RULES, Some(TOKEN), "");
    assert_eq!(status, 200);
    assert_eq!(list["meta"]["result_count"], 1);
    let cats = list["data"][0]["id"].as_str().unwrap().to_string();

    let add = json!({"add": [{"value": "bts", "tag": "bts"}, {"value": "cats"}]}).to_string();
    let (status, dry) = call(
        a,
        "POST",
        &format!("{RULES}?dry_run=true"),
        Some(TOKEN),
        &add,
    );
    assert_eq!(status, 201);
    assert_eq!(dry["meta"]["summary"]["created"], 1);
    assert_eq!(dry["errors"][0]["title"], "DuplicateRule");
    assert_eq!(
        call(a, "GET", RULES, Some(TOKEN), "").1["meta"]["result_count"],
        1
    );

    let (_, added) = call(a, "POST", RULES, Some(TOKEN), &add);
    let bts = added["data"][0]["id"].as_str().unwrap().to_string();
    let (_, one) = call(a, "GET", &format!("{RULES}?ids={bts}"), Some(TOKEN), "");
    assert_eq!(one["data"][0]["tag"], "bts");
    assert_eq!(one["meta"]["result_count"], 1);

    let del = json!({"delete": {"ids": [cats, "404"]}}).to_string();
    let (status, deleted) = call(a, "POST", RULES, Some(TOKEN), &del);
    assert_eq!(status, 200);
    assert_eq!(deleted["meta"]["summary"]["deleted"], 1);
    assert_eq!(deleted["meta"]["summary"]["not_deleted"], 1);

    let both = r#"{"add": [{"value": "x"}], "delete": {"ids": ["1"]}}"#;
    for bad in ["{", "{}", r#"{"add": []}"#, r#"{"nope": 1}"#, both] {
        assert_eq!(call(a, "POST", RULES, Some(TOKEN), bad).0, 400, "{bad}");
    }
    let (_, invalid) = call(
        a,
        "POST",
        RULES,
        Some(TOKEN),
        r#"{"add": [{"value": " "}]}"#,
    );
    assert_eq!(invalid["meta"]["summary"]["invalid"], 1);
    let (_, rules) = call(a, "GET", "/_sim/rules", None, "");
    assert_eq!(rules.as_array().unwrap().len(), 1);
}

/// Reads stream lines from `s` until `n` tweets arrived; returns (tweets, keep-alives).
fn read_stream(s: &mut TcpStream, n: usize) -> (Vec<Value>, usize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Chunk framing is not parsed: tweet lines are found by their JSON start.
        let text = String::from_utf8_lossy(&buf).into_owned();
        let tweets: Vec<Value> = text
            .split('\n')
            .filter(|l| l.starts_with("{\"data\""))
            .filter_map(|l| serde_json::from_str(l.trim_end()).ok())
            .collect();
        if tweets.len() >= n || Instant::now() > deadline {
            return (tweets, text.matches("\r\n\r\n").count());
        }
        let got = s.read(&mut chunk).unwrap();
        assert!(got > 0, "stream ended early");
        buf.extend_from_slice(&chunk[..got]);
    }
}

#[test]
fn stream_sends_matching_tweets_and_allows_one_connection() {
    let sim = start(&["--total", "5", "--keepalive-ms", "50", "--rule", "bts=bts"]);
    let a = sim.addr.as_str();
    let path = "/2/tweets/search/stream?tweet.fields=created_at&expansions=author_id";
    assert_eq!(call(a, "GET", path, None, "").0, 401);
    assert_eq!(
        call(
            a,
            "GET",
            "/2/tweets/search/stream?tweet.fields=bogus",
            Some(TOKEN),
            ""
        )
        .0,
        400
    );

    let mut first = send(a, "GET", path, Some(TOKEN), "");
    let (tweets, _) = read_stream(&mut first, 5);
    assert_eq!(tweets.len(), 5);
    for t in &tweets {
        assert!(t["data"]["text"].as_str().unwrap().contains("bts"));
        assert_eq!(t["matching_rules"][0]["tag"], "bts");
        assert!(t["data"]["created_at"].is_string());
        assert!(t["includes"]["users"][0]["username"].is_string());
    }
    let (status, body) = call(a, "GET", path, Some(TOKEN), "");
    assert_eq!(status, 429);
    assert_eq!(body["connection_issue"], "TooManyConnections");

    std::thread::sleep(Duration::from_millis(200));
    let (_, stats) = call(a, "GET", "/_sim/stats", None, "");
    assert_eq!(stats["tweets_sent"], 5);
    assert!(stats["keepalives_sent"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["too_many_connections"], 1);
    drop(first);

    // The slot frees once the client goes; a scenario change applies to the next connect.
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(a, "GET", "/_sim/stats", None, "").1["active"] == true {
        assert!(Instant::now() < deadline, "connection slot not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let patch = json!({"reject_next": 1, "reject_status": 429, "rate_limit_reset_secs": 7});
    let (status, scenario) = call(a, "POST", "/_sim/scenario", None, &patch.to_string());
    assert_eq!(status, 200);
    assert_eq!(scenario["total"], 5);
    let mut s = send(a, "GET", path, Some(TOKEN), "");
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("x-rate-limit-reset:"), "{text}");
    assert_eq!(
        call(a, "POST", "/_sim/scenario", None, r#"{"bogus": 1}"#).0,
        400
    );
}
