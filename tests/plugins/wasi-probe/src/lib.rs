//! Built for `wasm32-wasip2`, so Rust's std imports WASI. For every record it answers with a
//! JSON report of what the sandbox let it see: an environment variable, a file under `/data`,
//! the wall clock, and whether it could open a TCP connection.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transform",
});

struct Probe;

impl Guest for Probe {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(batch: Vec<Record>) -> Vec<Outcome> {
        let env = std::env::var("SLUICE_PROBE").ok();
        let file = std::fs::read_to_string("/data/probe.txt").ok();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let tcp = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
        let report = format!(
            "{{\"env\":{},\"file\":{},\"clock\":{clock},\"tcp\":{tcp}}}",
            json_str(env.as_deref()),
            json_str(file.as_deref().map(str::trim)),
        );
        batch
            .iter()
            .map(|_| Outcome::SetValue(report.clone().into_bytes()))
            .collect()
    }
}

fn json_str(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        None => "null".into(),
    }
}

export!(Probe);
