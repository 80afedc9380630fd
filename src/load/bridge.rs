//! The bridge under test: a `dialtone serve` process (this build or any other, given by path)
//! pointed at the load model with `DIALTONE_REALTIME_URL`, optionally pinned to CPUs with
//! `taskset` (which execs it, so its pid is the server's). Waits for `/healthz` before the
//! first call and reads `/metrics` while calls are up, with plain HTTP/1.0 over a TCP stream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::process::{Guarded, Tail, pinned};

/// How long the server may take to answer `/healthz` after it is started.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// Time limit of one HTTP request.
const HTTP_LIMIT: Duration = Duration::from_secs(5);

/// Environment that would point the server elsewhere or make it refuse our calls: an API key
/// (the server would still use our URL, but sends the key along), Twilio signature checks, a
/// config file.
const CLEARED_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_VERSION",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_API_BASE",
    "DIALTONE_CONFIG",
    "DIALTONE_PUBLIC_URL",
    "DIALTONE_ENGINE_SCRIPT",
    "DIALTONE_API_TOKEN",
];

/// How to start the server.
#[derive(Debug)]
pub struct BridgeSpec<'a> {
    /// The `dialtone` binary to run.
    pub bin: &'a Path,
    /// HTTP address (`--http`).
    pub http: SocketAddr,
    /// Arguments after `serve --http ADDR`.
    pub args: Vec<String>,
    /// The load model's WebSocket URL.
    pub realtime_url: &'a str,
    /// CPUs to run on (`taskset -c` list), if pinned.
    pub cpus: Option<String>,
}

/// A running server.
#[derive(Debug)]
pub struct Bridge {
    process: Guarded,
    http: SocketAddr,
    tail: Tail,
}

impl Bridge {
    /// Starts the server and waits until `/healthz` answers 200.
    pub fn start(spec: BridgeSpec<'_>) -> Result<Self> {
        let mut command = match &spec.cpus {
            Some(cpus) => pinned(spec.bin, cpus),
            None => Command::new(spec.bin),
        };
        command
            .arg("serve")
            .arg("--http")
            .arg(spec.http.to_string())
            .args(&spec.args)
            .env("DIALTONE_REALTIME_URL", spec.realtime_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        let mut process = Guarded::spawn(&mut command, "the server under test")?;
        let tail = process
            .child_mut()
            .stderr
            .take()
            .map(Tail::collect)
            .unwrap_or_default();
        let mut bridge = Self {
            process,
            http: spec.http,
            tail,
        };
        bridge.wait_healthy(spec.bin)?;
        Ok(bridge)
    }

    fn wait_healthy(&mut self, bin: &Path) -> Result<()> {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            if let Ok((200, _)) = http_get(self.http, "/healthz") {
                return Ok(());
            }
            if let Some(status) = self.process.try_wait() {
                bail!(
                    "{} serve exited ({status}) before answering /healthz; its stderr:\n{}",
                    bin.display(),
                    self.tail.text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} serve did not answer GET http://{}/healthz within {} s; its stderr:\n{}",
                    bin.display(),
                    self.http,
                    STARTUP_LIMIT.as_secs(),
                    self.tail.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The sum of every `dialtone_calls_active` series of `/metrics`.
    pub fn calls_active(&self) -> Result<u64> {
        let (status, body) = http_get(self.http, "/metrics")
            .with_context(|| format!("GET http://{}/metrics", self.http))?;
        if status != 200 {
            bail!("GET http://{}/metrics answered {status}", self.http);
        }
        Ok(metric_sum(&body, "dialtone_calls_active") as u64)
    }

    /// The last lines the server wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        self.tail.text()
    }

    /// SIGTERM, then up to `grace` for the drain and the exit; killed after that.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.process.terminate(grace)
    }
}

/// A GET over HTTP/1.0: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_LIMIT)?;
    stream.set_read_timeout(Some(HTTP_LIMIT))?;
    stream.set_write_timeout(Some(HTTP_LIMIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.take(16 << 20).read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

/// The sum of every series of metric `name` in Prometheus text (0 when there is none).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name{labels} value` or `name value`, not a longer name.
            let value = match rest.chars().next()? {
                '{' => rest.rsplit_once('}')?.1,
                ' ' => rest,
                _ => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_series_are_summed() {
        let text = "# HELP dialtone_calls_active Calls in progress.\n\
                    # TYPE dialtone_calls_active gauge\n\
                    dialtone_calls_active{leg=\"twilio\"} 3\n\
                    dialtone_calls_active{leg=\"sip\"} 47\n\
                    dialtone_calls_active_total 1000\n\
                    dialtone_calls_total{leg=\"sip\"} 50\n";
        assert_eq!(metric_sum(text, "dialtone_calls_active"), 50.0);
        assert_eq!(
            metric_sum("dialtone_calls_active 2\n", "dialtone_calls_active"),
            2.0
        );
        assert_eq!(metric_sum("", "dialtone_calls_active"), 0.0);
    }
}
