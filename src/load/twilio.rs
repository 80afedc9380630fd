//! `dialtone load twilio`: the Twilio rig. It writes a dialplan with one default route, starts
//! the load model and `dialtone serve --no-sip` on loopback (the server optionally pinned to a
//! CPU), places `--calls` simulated Twilio calls `--ramp-ms` apart, each streaming for
//! `--duration-s`, and reports what the calls cost the server.
//!
//! The measurement window opens one model period (6 s: every call has heard a whole response)
//! after the last call connected, and closes when the first call ends. Over it the rig reads
//! the CPU time of the server, of the model and of itself from `/proc`, and the server's
//! resident memory at the end, which is compared with its resident memory before the first
//! call. Latency is measured on every marker, from the first response on.
//!
//! With `--pin-rig` the rig and the model share that CPU; with it but without `--pin-server`
//! the server is started on the CPUs the rig had before pinning itself.
//!
//! The run has a hard deadline: the ramp, the duration and 60 s. Past it, every child is
//! killed and the command fails.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::bridge::{Bridge, BridgeSpec};
use super::caller::{self, CallOutcome, CallSpec, Window};
use super::dialplan_dir::{DialplanDir, RouteFormat};
use super::model::{self, DEFAULT_PERIOD_MS};
use super::process;
use super::procfs::{self, Memory, Pid};
use super::report::{Latency, ServerFigures, TwilioReport, cpu_percent, mib, round};

/// Most calls one run places.
pub const MAX_CALLS: usize = 5000;

/// Longest call, in seconds.
pub const MAX_DURATION_S: u64 = 3600;

/// Added to the ramp and the duration for the hard deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(60);

/// How long the server may take to drain and exit after SIGTERM (it is run with
/// `--drain-secs 1`).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `dialtone load twilio`.
#[derive(Debug, Clone, clap::Args)]
pub struct TwilioArgs {
    /// Calls to place.
    #[arg(long)]
    pub calls: usize,
    /// Seconds each call streams once connected.
    #[arg(long)]
    pub duration_s: u64,
    /// The `dialtone` binary to measure (default: this one). Any build with
    /// `serve --http --no-sip --dialplans --drain-secs` and DIALTONE_REALTIME_URL works.
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// The route's audio format (pcm16 makes the bridge resample; no latency then).
    #[arg(long, value_enum, default_value_t = RouteFormat::Pcmu)]
    pub format: RouteFormat,
    /// Audio milliseconds in each of the model's deltas.
    #[arg(long, default_value_t = 20)]
    pub delta_ms: u32,
    /// How much faster than real time the model sends its deltas.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Run the server on this CPU (with taskset).
    #[arg(long)]
    pub pin_server: Option<usize>,
    /// Run the rig and the model on this CPU.
    #[arg(long)]
    pub pin_rig: Option<usize>,
    /// Milliseconds between two calls' starts.
    #[arg(long, default_value_t = 20)]
    pub ramp_ms: u64,
}

/// CPU time of the three processes at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    server: u64,
    model: u64,
    rig: u64,
}

impl Sample {
    fn take(server: u32, model: u32) -> Result<Self> {
        Ok(Self {
            at: Instant::now(),
            server: procfs::cpu_ticks(Pid::Of(server))?,
            model: procfs::cpu_ticks(Pid::Of(model))?,
            rig: procfs::cpu_ticks(Pid::This)?,
        })
    }
}

/// What the calls measured.
struct Measured {
    outcomes: Vec<CallOutcome>,
    before: Sample,
    after: Sample,
    memory: Memory,
}

/// Runs the rig.
pub fn run(args: &TwilioArgs) -> Result<()> {
    if args.calls == 0 || args.calls > MAX_CALLS {
        bail!("--calls must be between 1 and {MAX_CALLS}");
    }
    if args.duration_s == 0 || args.duration_s > MAX_DURATION_S {
        bail!("--duration-s must be between 1 and {MAX_DURATION_S}");
    }
    if args.ramp_ms > 10_000 {
        bail!("--ramp-ms must be at most 10000");
    }
    // Checked here too, so that a bad value is reported before anything starts.
    super::schedule::Plan::new(
        args.delta_ms,
        args.speed,
        model::DEFAULT_TALK_MS,
        DEFAULT_PERIOD_MS,
    )?;
    let ramp = Duration::from_millis(args.ramp_ms) * (args.calls as u32 - 1);
    let deadline = Instant::now() + ramp + Duration::from_secs(args.duration_s) + DEADLINE_MARGIN;

    let cpus_before = procfs::allowed_cpus();
    if let Some(cpu) = args.pin_rig {
        process::pin_self(cpu)?;
    }
    let server_cpus = match (args.pin_server, args.pin_rig) {
        (Some(cpu), _) => Some(cpu.to_string()),
        (None, Some(_)) => cpus_before,
        (None, None) => None,
    };
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("cannot find this executable")?,
    };
    let dialplans = DialplanDir::create(args.format)?;
    let mut model = model::start_child(args.delta_ms, args.speed)?;
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_tcp_port()?));
    let dir = dialplans.path().display().to_string();
    let mut bridge = Bridge::start(BridgeSpec {
        bin: &bin,
        http,
        args: ["--no-sip", "--dialplans", &dir, "--drain-secs", "1"]
            .map(str::to_owned)
            .to_vec(),
        realtime_url: &model.url,
        cpus: server_cpus,
    })?;
    let idle = procfs::memory(Pid::Of(bridge.pid()))?;
    eprintln!(
        "load: {} serve (pid {}) on http://{http}, model at {}; {} calls of {} s",
        bin.display(),
        bridge.pid(),
        model.url,
        args.calls,
        args.duration_s
    );

    let runtime = super::runtime()?;
    let drive = drive(args, http, bridge.pid(), model.process.pid());
    let bounded = async { tokio::time::timeout_at(deadline.into(), drive).await };
    let measured = match runtime.block_on(bounded) {
        Ok(measured) => measured?,
        Err(_) => bail!(
            "the run passed its hard deadline ({} s); the server and the model were killed",
            (ramp + Duration::from_secs(args.duration_s) + DEADLINE_MARGIN).as_secs()
        ),
    };
    drop(runtime);

    let report = report(args, &measured, idle, procfs::clock_ticks());
    report.print();
    let failed: Vec<&CallOutcome> = measured.outcomes.iter().filter(|o| o.failed()).collect();
    for outcome in failed.iter().take(5) {
        let why = outcome.error.as_deref().unwrap_or("no audio arrived");
        eprintln!("load: a call failed: {why}");
    }
    if !failed.is_empty() {
        eprintln!("load: the server's last lines:\n{}", bridge.stderr_tail());
    }
    match bridge.stop(STOP_GRACE) {
        Some(status) if status.success() => {}
        Some(status) => eprintln!("load: the server exited with {status}"),
        None => eprintln!(
            "load: the server did not exit within {} s of SIGTERM and was killed",
            STOP_GRACE.as_secs()
        ),
    }
    model.process.terminate(Duration::from_secs(2));
    drop(dialplans);
    Ok(())
}

/// Places the calls, measures over the window, and collects every call's outcome.
async fn drive(args: &TwilioArgs, http: SocketAddr, server: u32, model: u32) -> Result<Measured> {
    let url = format!("ws://{http}/twilio/media");
    let duration = Duration::from_secs(args.duration_s);
    let window = Arc::new(OnceLock::new());
    let payload = caller::caller_payload();
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() << 20);
    let (tx, mut connected) = mpsc::unbounded_channel();
    let first_start = Instant::now() + Duration::from_millis(50);
    let mut calls = JoinSet::new();
    for index in 0..args.calls {
        let spec = CallSpec {
            index,
            url: url.clone(),
            start_at: first_start + Duration::from_millis(args.ramp_ms) * index as u32,
            duration,
            run_id,
        };
        calls.spawn(caller::run(
            spec,
            Arc::clone(&payload),
            Arc::clone(&window),
            tx.clone(),
        ));
    }
    drop(tx);

    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    // Every call reports once: when it connected, or that it could not.
    for _ in 0..args.calls {
        let Some(report) = connected.recv().await else {
            break;
        };
        if let Some(at) = report {
            first = Some(first.map_or(at, |f| f.min(at)));
            last = Some(last.map_or(at, |l| l.max(at)));
        }
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no call could connect to {url}; is the server's /twilio/media reachable?");
    };
    let end = first + duration;
    let warm = last + Duration::from_millis(u64::from(DEFAULT_PERIOD_MS));
    let start = if warm < end {
        warm
    } else {
        eprintln!(
            "load: --duration-s {} leaves no {} s warm-up after the last call connected; \
             measuring from then on",
            args.duration_s,
            DEFAULT_PERIOD_MS / 1000
        );
        last
    };
    if start >= end {
        bail!(
            "the first call ended before the last one connected: raise --duration-s above \
             the ramp ({} calls x {} ms)",
            args.calls,
            args.ramp_ms
        );
    }
    let _ = window.set(Window { start, end });

    tokio::time::sleep_until(start.into()).await;
    let before = Sample::take(server, model)?;
    tokio::time::sleep_until(end.into()).await;
    let after = Sample::take(server, model)?;
    let memory = procfs::memory(Pid::Of(server))?;

    let mut outcomes = Vec::with_capacity(args.calls);
    while let Some(done) = calls.join_next().await {
        outcomes.push(done.unwrap_or_else(|e| CallOutcome {
            error: Some(format!("the call's task failed: {e}")),
            ..CallOutcome::default()
        }));
    }
    Ok(Measured {
        outcomes,
        before,
        after,
        memory,
    })
}

fn report(args: &TwilioArgs, m: &Measured, idle: Memory, hz: u64) -> TwilioReport {
    let calls = args.calls as f64;
    let seconds = m.after.at.duration_since(m.before.at).as_secs_f64();
    let cpu = |after: u64, before: u64| cpu_percent(after.saturating_sub(before), hz, seconds);
    let server_cpu = cpu(m.after.server, m.before.server);
    let grown_kib = m.memory.rss_kib as f64 - idle.rss_kib as f64;
    let media: u64 = m.outcomes.iter().map(|o| o.media_in_window).sum();
    let latencies = m
        .outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter().copied())
        .collect();
    TwilioReport {
        rig: "twilio",
        calls: args.calls,
        failed_calls: m.outcomes.iter().filter(|o| o.failed()).count(),
        duration_s: args.duration_s,
        format: args.format.dialplan_name(),
        delta_ms: args.delta_ms,
        speed: args.speed,
        server: ServerFigures {
            window_s: round(seconds, 2),
            server_cpu_pct: round(server_cpu, 2),
            server_cpu_pct_per_call: round(server_cpu / calls, 3),
            server_rss_idle_mib: round(mib(idle.rss_kib), 2),
            server_rss_end_mib: round(mib(m.memory.rss_kib), 2),
            server_rss_per_call_mib: round(grown_kib / 1024.0 / calls, 4),
            server_vm_hwm_mib: round(mib(m.memory.hwm_kib), 2),
        },
        latency: Latency::from_micros(latencies),
        media_in_per_call_per_s: if seconds > 0.0 {
            round(media as f64 / calls / seconds, 2)
        } else {
            0.0
        },
        rig_cpu_pct: round(cpu(m.after.rig, m.before.rig), 2),
        model_cpu_pct: round(cpu(m.after.model, m.before.model), 2),
    }
}
