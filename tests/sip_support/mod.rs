//! Real SIP peers for tests: the `dialtone` binary started as a user would start it, SIPp
//! scenarios from `tests/sipp/`, and a tcpdump capture of the RTP the bridge sends.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A UDP port free at the time of asking (for SIPp, which cannot take port 0), above the
/// bridges' RTP range (30000-39999) so that a bridge cannot take it in the meantime.
pub fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = s.local_addr().expect("addr").port();
        // SIPp also binds port+2 for RTP: keep clear of the odd/even pair games.
        if port % 2 == 0
            && (40000..60000).contains(&port)
            && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
}

/// The bridge running as a process.
pub struct BridgeProcess {
    child: Child,
    pub http: SocketAddr,
    pub sip: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl BridgeProcess {
    /// `dialtone serve` on 127.0.0.1 with ports chosen by the OS, on the embedded engine.
    pub fn start(extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialtone"));
        cmd.args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--sip",
            "127.0.0.1:0",
            "--rtp-ports",
            "30000-39999",
            "--drain-secs",
            "2",
        ])
        .args(extra)
        .current_dir(root())
        .env_remove("OPENAI_API_KEY")
        .env_remove("AZURE_OPENAI_ENDPOINT")
        .env_remove("DIALTONE_REALTIME_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("dialtone starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (mut http, mut sip) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.is_none() || sip.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("dialtone did not start:\n{}", log.lock().unwrap()));
            let addr = || {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            };
            if line.contains("dialtone listening") {
                http = addr();
            } else if line.contains("SIP listening") {
                sip = addr();
            }
        }
        Self {
            child,
            http: http.unwrap(),
            sip: sip.unwrap(),
            log,
        }
    }

    /// The process id, e.g. to signal it while a call is up.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A SIPp run's result.
pub struct SippRun {
    pub status: Option<ExitStatus>,
    pub output: String,
}

impl SippRun {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Starts SIPp in `tests/sipp/` with `args`; the returned child is waited on with
/// [`wait_sipp`].
pub fn spawn_sipp(args: &[String]) -> Child {
    Command::new("sipp")
        .args(args)
        .current_dir(root().join("tests/sipp"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed (tests/run.sh installs sip-tester)")
}

/// Waits for SIPp to end, up to `limit` (then kills it).
pub fn wait_sipp(mut child: Child, limit: Duration) -> SippRun {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut output);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut output);
    }
    SippRun { status, output }
}

/// Runs a SIPp caller scenario against the bridge and waits for it.
pub fn run_sipp(bridge: SocketAddr, scenario: &str, extra: &[&str], limit: Duration) -> SippRun {
    let (port, media) = (free_port(), free_port());
    spawn_sipp_uac(bridge, scenario, extra, port, media, limit)
}

/// Like [`run_sipp`] with the caller's signalling and media ports given.
pub fn spawn_sipp_uac(
    bridge: SocketAddr,
    scenario: &str,
    extra: &[&str],
    port: u16,
    media: u16,
    limit: Duration,
) -> SippRun {
    let mut args: Vec<String> = vec![
        bridge.to_string(),
        "-sf".into(),
        scenario.into(),
        "-s".into(),
        "100".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        media.to_string(),
        "-nostdin".into(),
        "-timeout".into(),
        format!("{}s", limit.as_secs()),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    wait_sipp(spawn_sipp(&args), limit + Duration::from_secs(10))
}

/// A tcpdump capture of UDP packets to one port on loopback.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    pub fn start(port: u16, name: &str) -> Self {
        let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{port}.pcap"));
        let child = Command::new("tcpdump")
            .args(["-i", "lo", "-n", "-U", "-w"])
            .arg(&file)
            .arg(format!("udp and dst port {port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump is installed (tests/run.sh installs it)");
        // tcpdump needs a moment before it captures.
        std::thread::sleep(Duration::from_millis(700));
        Self { child, file }
    }

    /// Stops the capture and returns the RTP packets (payload type, payload) in capture order.
    pub fn finish(mut self) -> Vec<(u8, Vec<u8>)> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let data = std::fs::read(&self.file).unwrap_or_default();
        rtp_from_pcap(&data)
    }
}

/// RTP packets in a pcap of UDP over IPv4 on loopback (Ethernet or Linux SLL framing).
fn rtp_from_pcap(data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    if data.len() < 24 {
        return out;
    }
    let link = u32::from_le_bytes([data[20], data[21], data[22], data[23]]);
    let link_len = match link {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked
        276 => 20, // Linux cooked v2
        0 => 4,    // BSD loopback
        _ => return out,
    };
    let mut i = 24;
    while i + 16 <= data.len() {
        let caplen =
            u32::from_le_bytes([data[i + 8], data[i + 9], data[i + 10], data[i + 11]]) as usize;
        let pkt = &data[(i + 16).min(data.len())..(i + 16 + caplen).min(data.len())];
        i += 16 + caplen;
        if pkt.len() < link_len + 20 {
            continue;
        }
        let ip = &pkt[link_len..];
        let ihl = usize::from(ip[0] & 0x0F) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let rtp = &ip[ihl + 8..];
        if rtp.len() < 12 || rtp[0] >> 6 != 2 {
            continue;
        }
        let pt = rtp[1] & 0x7F;
        if (72..=76).contains(&pt) {
            continue; // RTCP
        }
        let cc = usize::from(rtp[0] & 0x0F);
        let start = 12 + 4 * cc;
        if rtp.len() >= start {
            out.push((pt, rtp[start..].to_vec()));
        }
    }
    out
}

/// Whether `haystack` contains `needle` byte for byte.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Writes `text` to a fresh file under the test temp dir and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
