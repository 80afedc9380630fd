//! `dialtone load sip`: the SIP rig. It starts the load model and `dialtone serve` with SIP on
//! loopback (answering at once: `--ring-ms 0`), then has SIPp (Debian's `sip-tester`) place
//! `--calls` calls at `--rate` per second with the project's speech scenario
//! (`uac_ulaw_speech.xml`, the prompt looped for the whole call), each held for
//! `--duration-s` after it is answered, so that all of them are up at once for a while.
//!
//! The measurement window is the time the bridge reports all calls up
//! (`dialtone_calls_active` on `/metrics`, polled every 250 ms): the server's and the model's
//! CPU time and the server's resident memory are read at every poll, and the first and last
//! readings with every call up are compared. Failed calls are SIPp's own count, from its
//! statistics file (`-trace_stat`), and its exit status (0: every call followed the scenario).
//!
//! The server's RTP ports are 30000-39999, a pair per call; SIPp's signalling and media ports
//! are chosen free above that. The run has a hard deadline: the ramp, the duration and 60 s.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::bridge::{Bridge, BridgeSpec};
use super::dialplan_dir::{DialplanDir, RouteFormat};
use super::model;
use super::process::{self, Guarded, Tail};
use super::procfs::{self, Memory, Pid};
use super::report::{ServerFigures, SipReport, cpu_percent, mib, round};

/// The scenario SIPp runs, in `--scenario-dir`.
pub const SCENARIO: &str = "uac_ulaw_speech.xml";

/// The server's RTP ports: a pair per call.
const RTP_PORTS: (u16, u16) = (30_000, 39_999);

/// Most calls one run places (the RTP range has room for 5000).
pub const MAX_CALLS: usize = 2000;

/// Time between two polls of `/metrics`.
const POLL: Duration = Duration::from_millis(250);

/// Added to the ramp and the duration for SIPp's own timeout.
const SIPP_MARGIN: Duration = Duration::from_secs(30);

/// Added to the ramp and the duration for the hard deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(60);

/// Arguments of `dialtone load sip`.
#[derive(Debug, Clone, clap::Args)]
pub struct SipArgs {
    /// Calls to place; all of them are to be up at once.
    #[arg(long)]
    pub calls: usize,
    /// New calls per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds each call is held once answered (SIPp's -d).
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// The `dialtone` binary to measure (default: this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Run the server on this CPU (with taskset).
    #[arg(long)]
    pub pin_server: Option<usize>,
    /// Directory holding uac_ulaw_speech.xml; SIPp runs in it.
    #[arg(long, default_value = "tests/sipp")]
    pub scenario_dir: PathBuf,
    /// The caller's speech, raw µ-law, relative to the scenario directory (looped).
    #[arg(long, default_value = "../data/book_table_8k.ulaw")]
    pub speech: PathBuf,
}

/// CPU time and the server's memory at one poll.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    server: u64,
    model: u64,
    sipp: u64,
    memory: Memory,
}

impl Sample {
    fn take(server: u32, model: u32, sipp: u32) -> Option<Self> {
        Some(Self {
            at: Instant::now(),
            server: procfs::cpu_ticks(Pid::Of(server)).ok()?,
            model: procfs::cpu_ticks(Pid::Of(model)).ok()?,
            sipp: procfs::cpu_ticks(Pid::Of(sipp)).ok()?,
            memory: procfs::memory(Pid::Of(server)).ok()?,
        })
    }
}

/// Runs the rig.
pub fn run(args: &SipArgs) -> Result<()> {
    let ramp = check(args)?;
    let duration = Duration::from_secs(args.duration_s);
    let deadline = Instant::now() + ramp + duration + DEADLINE_MARGIN;
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("cannot find this executable")?,
    };
    let dialplans = DialplanDir::create(RouteFormat::Pcmu)?;
    let out = dialplans.path().join("sipp");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut model = model::start_child(20, 1.0)?;
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_tcp_port()?));
    let sip = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_sip_port()?));
    let dir = dialplans.path().display().to_string();
    let mut bridge = Bridge::start(BridgeSpec {
        bin: &bin,
        http,
        args: vec![
            "--sip".into(),
            sip.to_string(),
            "--rtp-ports".into(),
            format!("{}-{}", RTP_PORTS.0, RTP_PORTS.1),
            "--ring-ms".into(),
            "0".into(),
            "--dialplans".into(),
            dir,
            "--drain-secs".into(),
            "1".into(),
        ],
        realtime_url: &model.url,
        cpus: args.pin_server.map(|cpu| cpu.to_string()),
    })?;
    let idle = procfs::memory(Pid::Of(bridge.pid()))?;
    eprintln!(
        "load: {} serve (pid {}) with SIP on {sip}, model at {}; SIPp places {} calls at {}/s, {} s each",
        bin.display(),
        bridge.pid(),
        model.url,
        args.calls,
        args.rate,
        args.duration_s
    );

    let mut sipp = spawn_sipp(args, sip, &out, ramp + duration + SIPP_MARGIN)?;
    let tail = sipp
        .child_mut()
        .stderr
        .take()
        .map(Tail::collect)
        .unwrap_or_default();
    let (server, model_pid, sipp_pid) = (bridge.pid(), model.process.pid(), sipp.pid());
    let mut calls_up_max = 0;
    let (mut first, mut last, mut closed) = (None::<Sample>, None::<Sample>, false);
    let status = loop {
        if let Some(status) = sipp.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            bail!(
                "the run passed its hard deadline ({} s); SIPp, the server and the model were killed",
                (ramp + duration + DEADLINE_MARGIN).as_secs()
            );
        }
        // A busy server may miss a poll; the next one counts.
        if let Ok(active) = bridge.calls_active() {
            calls_up_max = calls_up_max.max(active);
            if active >= args.calls as u64 && !closed {
                let sample = Sample::take(server, model_pid, sipp_pid);
                if first.is_none() {
                    first = sample;
                } else if sample.is_some() {
                    last = sample;
                }
            } else if first.is_some() {
                closed = true;
            }
        }
        std::thread::sleep(POLL);
    };

    let stats = std::fs::read_to_string(out.join("stat.csv"))
        .ok()
        .and_then(|t| parse_stat_csv(&t));
    let hz = procfs::clock_ticks();
    let report = report(
        args,
        first.zip(last),
        idle,
        hz,
        stats,
        status.code(),
        calls_up_max,
    );
    if first.zip(last).is_none() {
        println!(
            "the bridge never had all {} calls up at once for two polls (at most {calls_up_max}): \
             no CPU or memory figures. Lower --rate's ramp against --duration-s, or see SIPp's errors.",
            args.calls
        );
    }
    report.print();
    if !status.success() {
        let errors = std::fs::read_to_string(out.join("errors.log")).unwrap_or_default();
        let errors: Vec<&str> = errors.lines().rev().take(10).collect();
        eprintln!(
            "load: SIPp exited with {status}; its last errors:\n{}\n{}",
            errors.into_iter().rev().collect::<Vec<_>>().join("\n"),
            tail.text()
        );
        eprintln!("load: the server's last lines:\n{}", bridge.stderr_tail());
    }
    if bridge.stop(Duration::from_secs(10)).is_none() {
        eprintln!("load: the server did not exit within 10 s of SIGTERM and was killed");
    }
    model.process.terminate(Duration::from_secs(2));
    drop(dialplans);
    Ok(())
}

/// Checks the arguments and what SIPp needs; returns the time to start every call.
fn check(args: &SipArgs) -> Result<Duration> {
    if args.calls == 0 || args.calls > MAX_CALLS {
        bail!("--calls must be between 1 and {MAX_CALLS}");
    }
    let pairs = usize::from(RTP_PORTS.1 - RTP_PORTS.0 + 1) / 2;
    if args.calls > pairs {
        bail!(
            "the server's RTP range has room for {pairs} calls, not {}",
            args.calls
        );
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1000.0) {
        bail!("--rate must be above 0 and at most 1000 calls per second");
    }
    if args.duration_s == 0 || args.duration_s > super::twilio::MAX_DURATION_S {
        bail!(
            "--duration-s must be between 1 and {}",
            super::twilio::MAX_DURATION_S
        );
    }
    let ramp = Duration::from_secs_f64(args.calls as f64 / args.rate);
    if ramp + Duration::from_secs(2) >= Duration::from_secs(args.duration_s) {
        bail!(
            "at {} calls per second the last of {} calls starts {:.1} s after the first, which \
             leaves too little of a {} s call for all to be up at once: raise --rate or \
             --duration-s",
            args.rate,
            args.calls,
            ramp.as_secs_f64(),
            args.duration_s
        );
    }
    if !process::available("sipp") {
        bail!("sipp is not installed: install Debian's sip-tester (apt-get install sip-tester)");
    }
    let scenario = args.scenario_dir.join(SCENARIO);
    if !scenario.is_file() {
        bail!(
            "no SIPp scenario at {}: run from the project's root or give --scenario-dir",
            scenario.display()
        );
    }
    let speech = args.scenario_dir.join(&args.speech);
    if !speech.is_file() {
        bail!("no speech file at {}: give --speech", speech.display());
    }
    Ok(ramp)
}

/// Starts SIPp in the scenario directory, its statistics and errors going to `out`.
fn spawn_sipp(args: &SipArgs, bridge: SocketAddr, out: &Path, limit: Duration) -> Result<Guarded> {
    let port = process::free_sip_port()?;
    let media = process::free_media_port()?;
    let speech = format!("{},-1,0", args.speech.display());
    let mut command = Command::new("sipp");
    command
        .current_dir(&args.scenario_dir)
        .arg(bridge.to_string())
        .args(["-sf", SCENARIO, "-s", "100", "-key", "speech", &speech])
        .args(["-d", &(args.duration_s * 1000).to_string()])
        .args(["-r", &args.rate.to_string()])
        .args(["-l", &args.calls.to_string(), "-m", &args.calls.to_string()])
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media.to_string()])
        .args(["-nostdin", "-timeout", &format!("{}s", limit.as_secs())])
        .arg("-trace_stat")
        .arg("-stf")
        .arg(out.join("stat.csv"))
        .args(["-fd", "1", "-trace_err", "-error_file"])
        .arg(out.join("errors.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Guarded::spawn(&mut command, "sipp")
}

/// `SuccessfulCall(C)` and `FailedCall(C)` of the last row of SIPp's `-trace_stat` file.
pub fn parse_stat_csv(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let column = |name: &str| {
        let i = header.iter().position(|h| h.trim() == name)?;
        last.get(i)?.trim().parse().ok()
    };
    Some((column("SuccessfulCall(C)")?, column("FailedCall(C)")?))
}

fn report(
    args: &SipArgs,
    window: Option<(Sample, Sample)>,
    idle: Memory,
    hz: u64,
    stats: Option<(u64, u64)>,
    sipp_exit_code: Option<i32>,
    calls_up_max: u64,
) -> SipReport {
    let calls = args.calls as f64;
    let mut server = ServerFigures {
        server_rss_idle_mib: round(mib(idle.rss_kib), 2),
        ..ServerFigures::default()
    };
    let (mut model_cpu, mut sipp_cpu) = (0.0, 0.0);
    if let Some((a, b)) = window {
        let seconds = b.at.duration_since(a.at).as_secs_f64();
        let cpu = |after: u64, before: u64| cpu_percent(after.saturating_sub(before), hz, seconds);
        let server_cpu = cpu(b.server, a.server);
        let grown_kib = b.memory.rss_kib as f64 - idle.rss_kib as f64;
        server = ServerFigures {
            window_s: round(seconds, 2),
            server_cpu_pct: round(server_cpu, 2),
            server_cpu_pct_per_call: round(server_cpu / calls, 3),
            server_rss_idle_mib: round(mib(idle.rss_kib), 2),
            server_rss_end_mib: round(mib(b.memory.rss_kib), 2),
            server_rss_per_call_mib: round(grown_kib / 1024.0 / calls, 4),
            server_vm_hwm_mib: round(mib(b.memory.hwm_kib), 2),
        };
        model_cpu = round(cpu(b.model, a.model), 2);
        sipp_cpu = round(cpu(b.sipp, a.sipp), 2);
    }
    SipReport {
        rig: "sip",
        calls: args.calls,
        successful_calls: stats.map(|s| s.0),
        failed_calls: stats.map(|s| s.1),
        calls_up_max,
        duration_s: args.duration_s,
        rate_per_s: args.rate,
        sipp_exit_code,
        server,
        model_cpu_pct: model_cpu,
        sipp_cpu_pct: sipp_cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_statistics_last_row() {
        let text = "StartTime;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
                    2026-01-01\t10:00:00.0;5;0;0;0;0;\n\
                    2026-01-01\t10:00:01.0;0;48;48;2;2;\n";
        assert_eq!(parse_stat_csv(text), Some((48, 2)));
        assert_eq!(parse_stat_csv("StartTime;\n"), None);
        assert_eq!(parse_stat_csv(""), None);
    }
}
