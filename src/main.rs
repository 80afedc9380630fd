//! The `dialtone` command: `serve`, `mock-realtime`, `call`, `check` and `load`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dialtone::bridge::Timing;
use dialtone::dialplan;
use dialtone::engine::{self, EngineConfig, EngineScript};
use dialtone::realtime::client::RealtimeSettings;
use dialtone::rtp::PortRange;
use dialtone::server::{Server, ServerConfig, TwilioSettings};
use dialtone::sip::config;
use dialtone::sip::sdp::Codec;
use dialtone::sip::ua::SipConfig;
use dialtone::telemetry;
use tracing::info;

/// Default of `serve --append-ms`, chosen by measurement (README "Performance"): 100 ms
/// chunks cut the model socket's writes five-fold for at most 80 ms more before the model
/// hears the caller.
const DEFAULT_APPEND_MS: u64 = 100;

/// SIP options of `serve`. Each overrides the config file, which overrides the default.
#[derive(clap::Args)]
struct SipArgs {
    /// SIP signalling address, UDP and TCP (default 0.0.0.0:5060).
    #[arg(long, env = "DIALTONE_SIP")]
    sip: Option<SocketAddr>,
    /// RTP port range, e.g. 20000-29999 (the default).
    #[arg(long, env = "DIALTONE_RTP_PORTS")]
    rtp_ports: Option<PortRange>,
    /// Server config file: SIP settings, trunks, who may call (see dialtone.example.toml).
    #[arg(long, env = "DIALTONE_CONFIG")]
    config: Option<PathBuf>,
    /// Minimum ringing before a SIP call is answered, in milliseconds.
    #[arg(long, env = "DIALTONE_RING_MS", default_value_t = 3000)]
    ring_ms: u64,
    /// Serve Twilio only, no SIP.
    #[arg(long)]
    no_sip: bool,
}

/// Bridges phone calls into realtime speech-to-speech model sessions.
#[derive(Parser)]
#[command(name = "dialtone", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer calls: the Twilio webhook and Media Streams endpoint, /healthz, /metrics, /calls.
    ///
    /// The model is OpenAI's Realtime API when OPENAI_API_KEY is set, Azure OpenAI when
    /// AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY are, any compatible server at
    /// DIALTONE_REALTIME_URL, and otherwise the embedded local engine (an echo agent that
    /// needs no network).
    Serve {
        /// HTTP listen address.
        #[arg(long, env = "DIALTONE_HTTP", default_value = "0.0.0.0:8080")]
        http: SocketAddr,
        /// Directory of dialplan files.
        #[arg(long, env = "DIALTONE_DIALPLANS", default_value = "dialplans")]
        dialplans: PathBuf,
        /// Public origin Twilio reaches this server at, e.g. https://bridge.example.com.
        #[arg(long, env = "DIALTONE_PUBLIC_URL")]
        public_url: Option<String>,
        /// Script of tool calls for the embedded engine (ignored with a real model).
        #[arg(long, env = "DIALTONE_ENGINE_SCRIPT")]
        engine_script: Option<PathBuf>,
        /// Seconds calls in progress may go on after SIGTERM or Ctrl-C (default 30, or the
        /// config file's `drain_s`).
        #[arg(long, env = "DIALTONE_DRAIN_SECS")]
        drain_secs: Option<u64>,
        /// Caller audio is sent to the model in chunks of this many milliseconds (a multiple
        /// of 20): larger chunks cost less CPU per call and delay the model's hearing by as
        /// much (see README "Performance").
        #[arg(long, env = "DIALTONE_APPEND_MS", default_value_t = DEFAULT_APPEND_MS,
              value_parser = clap::value_parser!(u64).range(20..=1000))]
        append_ms: u64,
        #[command(flatten)]
        sip: SipArgs,
    },
    /// Run the embedded engine alone as a Realtime API server (for load tests).
    MockRealtime {
        /// Listen address, e.g. 127.0.0.1:9000.
        #[arg(long)]
        listen: SocketAddr,
        /// Script of tool calls (TOML).
        #[arg(long)]
        script: Option<PathBuf>,
        /// How much faster than real time response audio is streamed (0: all at once).
        #[arg(long, default_value_t = 4)]
        realtime_factor: u32,
    },
    /// Place a call through a running `dialtone serve` (its `POST /calls`), bridged like an
    /// inbound call once answered.
    Call {
        /// A SIP URI, or a number dialled through a trunk (or through Twilio with --twilio).
        to: String,
        /// The dialplan route to run the call on (default: matched on the number).
        #[arg(long)]
        route: Option<String>,
        /// Caller id: a number or SIP URI (required with --twilio).
        #[arg(long)]
        from: Option<String>,
        /// The trunk to place the call through (default: the first with a proxy or registrar).
        #[arg(long)]
        trunk: Option<String>,
        /// Place the call through Twilio's REST API instead of SIP.
        #[arg(long)]
        twilio: bool,
        /// The server's HTTP address (env DIALTONE_HTTP; 0.0.0.0 means this machine).
        #[arg(long, env = "DIALTONE_HTTP", default_value = "127.0.0.1:8080")]
        server: SocketAddr,
    },
    /// Validate a dialplan directory.
    Check {
        /// Directory of dialplan files.
        #[arg(default_value = "dialplans")]
        dir: PathBuf,
    },
    /// Load tests: a scheduled Realtime model, and rigs that measure a `dialtone serve`.
    Load {
        #[command(subcommand)]
        kind: dialtone::load::LoadCommand,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Check { dir } = &cli.command {
        return check(dir);
    }
    if let Command::Load { kind } = cli.command {
        return dialtone::load::run(kind);
    }
    telemetry::init();
    // Exactly one TLS provider is compiled in; installing it explicitly keeps a future
    // dependency from making the choice ambiguous at run time.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve {
                http,
                dialplans,
                public_url,
                engine_script,
                drain_secs,
                append_ms,
                sip,
            } => {
                let timing = Timing {
                    append_chunk: Duration::from_millis(append_ms / 20 * 20),
                    ..Timing::default()
                };
                serve(
                    http,
                    dialplans,
                    public_url,
                    engine_script,
                    drain_secs,
                    timing,
                    sip,
                )
                .await
            }
            Command::MockRealtime {
                listen,
                script,
                realtime_factor,
            } => mock_realtime(listen, script, realtime_factor).await,
            Command::Call {
                to,
                route,
                from,
                trunk,
                twilio,
                server,
            } => place_call(server, to, route, from, trunk, twilio).await,
            Command::Check { .. } | Command::Load { .. } => Ok(()),
        }
    })
}

fn check(dir: &std::path::Path) -> Result<()> {
    match dialplan::check(dir) {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn engine_config(script: Option<PathBuf>, realtime_factor: u32) -> Result<EngineConfig> {
    let script = match script {
        Some(path) => Some(EngineScript::load(&path)?),
        None => None,
    };
    Ok(EngineConfig {
        script,
        realtime_factor,
    })
}

async fn serve(
    http: SocketAddr,
    dialplans: PathBuf,
    public_url: Option<String>,
    engine_script: Option<PathBuf>,
    drain_secs: Option<u64>,
    timing: Timing,
    sip_args: SipArgs,
) -> Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let file = match &sip_args.config {
        Some(path) => config::ServerConfig::load(path)?,
        None => config::ServerConfig::default(),
    };
    let drain = Duration::from_secs(
        drain_secs.unwrap_or_else(|| file.sip.drain.map_or(30, |d| d.as_secs())),
    );
    let sip = if sip_args.no_sip {
        None
    } else {
        Some(sip_config(&sip_args, &file)?)
    };
    let realtime = RealtimeSettings::from_env_map(env);
    let config = ServerConfig {
        http,
        dialplans,
        public_url,
        realtime,
        twilio: TwilioSettings {
            auth_token: env("TWILIO_AUTH_TOKEN"),
            account_sid: env("TWILIO_ACCOUNT_SID"),
            api_base: env("TWILIO_API_BASE"),
        },
        engine: engine_config(engine_script, EngineConfig::default().realtime_factor)?,
        timing,
        drain,
        sip,
        api_token: env("DIALTONE_API_TOKEN"),
    };
    let realtime = config.realtime.describe();
    let signed = config.twilio.auth_token.is_some();
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    info!(%addr, %realtime, twilio_signatures = signed, "dialtone listening");
    server.run(shutdown_signal()).await?;
    info!("stopped");
    Ok(())
}

/// The SIP user agent's settings: command line, then config file, then defaults.
fn sip_config(args: &SipArgs, file: &config::ServerConfig) -> Result<SipConfig> {
    let listen = args
        .sip
        .or(file.sip.listen)
        .unwrap_or(config::DEFAULT_LISTEN);
    let rtp_ports = match args.rtp_ports {
        Some(range) => range,
        None => {
            let (start, end) = file.sip.rtp_ports.unwrap_or(config::DEFAULT_RTP_PORTS);
            PortRange::new(start, end)?
        }
    };
    let mut codecs = Vec::new();
    for name in &file.sip.codecs {
        codecs.push(match name.as_str() {
            "pcmu" => Codec::Pcmu,
            "pcma" => Codec::Pcma,
            "opus" if cfg!(feature = "opus") => Codec::Opus,
            "opus" => anyhow::bail!(
                "the config file asks for the opus codec, but this binary was built without \
                 the `opus` feature (cargo build --release --features opus)"
            ),
            other => anyhow::bail!("unknown codec {other}"),
        });
    }
    // Callers from the [sip] allow list and from every trunk's allow list may call.
    let mut allow = file.sip.allow.0.clone();
    for trunk in &file.trunks {
        allow.extend(trunk.allow.0.iter().cloned());
    }
    Ok(SipConfig {
        listen,
        rtp_ports,
        public_ip: file.sip.public_ip,
        codecs,
        allow: config::AccessList(allow),
        ring: Duration::from_millis(args.ring_ms),
        trunks: file.trunks.clone(),
        realm: file.sip.realm.clone(),
    })
}

/// Asks a running server to place a call and prints its answer.
async fn place_call(
    server: SocketAddr,
    to: String,
    route: Option<String>,
    from: Option<String>,
    trunk: Option<String>,
    twilio: bool,
) -> Result<()> {
    let host = if server.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), server.port())
    } else {
        server
    };
    let body = serde_json::json!({
        "to": to,
        "from": from,
        "route": route,
        "trunk": trunk,
        "via": if twilio { "twilio" } else { "sip" },
    });
    let mut request = reqwest::Client::new()
        .post(format!("http://{host}/calls"))
        .json(&body);
    if let Ok(token) = std::env::var("DIALTONE_API_TOKEN") {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach dialtone at {host}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the call was not placed ({status}): {text}");
    }
    println!("{text}");
    Ok(())
}

async fn mock_realtime(listen: SocketAddr, script: Option<PathBuf>, factor: u32) -> Result<()> {
    let config = Arc::new(engine_config(script, factor)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(addr = %listener.local_addr()?, "mock realtime server listening");
    engine::serve(listener, config, shutdown_signal()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    info!("shutdown requested");
}
