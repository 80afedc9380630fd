//! What a load run prints: a few human-readable lines, then one machine-readable line
//! `RESULT {json}` with the same figures (the JSON keys carry their units).
//!
//! CPU percentages are of one core: CPU seconds in the measurement window / window seconds *
//! 100. Per call, that is divided by the number of calls. Memory is in MiB (2^20 bytes);
//! memory per call is (resident at the end of the window - resident before the first call) /
//! calls.

use serde::Serialize;

/// The value at quantile `q` (0..=1) of `sorted` (ascending), by the nearest-rank method:
/// the smallest value with at least `q` of the samples at or below it.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(last)).copied()
}

/// Percent of one core used by `ticks` clock ticks over `seconds`.
pub fn cpu_percent(ticks: u64, hz: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 || hz == 0 {
        return 0.0;
    }
    ticks as f64 / hz as f64 / seconds * 100.0
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Rounds to `places` decimals, for readable JSON.
pub fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Latency figures over every marker seen, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub latency_samples: usize,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

impl Latency {
    /// From latencies in microseconds, in any order.
    pub fn from_micros(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let ms = |q: f64| percentile(&samples, q).map(|us| round(us as f64 / 1000.0, 3));
        Self {
            latency_samples: samples.len(),
            latency_p50_ms: ms(0.50),
            latency_p99_ms: ms(0.99),
            latency_max_ms: ms(1.0),
        }
    }
}

/// Server figures common to both rigs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerFigures {
    /// Seconds the figures were measured over.
    pub window_s: f64,
    pub server_cpu_pct: f64,
    pub server_cpu_pct_per_call: f64,
    pub server_rss_idle_mib: f64,
    pub server_rss_end_mib: f64,
    pub server_rss_per_call_mib: f64,
    pub server_vm_hwm_mib: f64,
}

/// The report of `dialtone load twilio`.
#[derive(Debug, Clone, Serialize)]
pub struct TwilioReport {
    pub rig: &'static str,
    pub calls: usize,
    pub failed_calls: usize,
    pub duration_s: u64,
    pub format: &'static str,
    pub delta_ms: u32,
    pub speed: f64,
    #[serde(flatten)]
    pub server: ServerFigures,
    #[serde(flatten)]
    pub latency: Latency,
    /// `media` messages from the bridge per call per second, in the window.
    pub media_in_per_call_per_s: f64,
    pub rig_cpu_pct: f64,
    pub model_cpu_pct: f64,
}

/// The report of `dialtone load sip`.
#[derive(Debug, Clone, Serialize)]
pub struct SipReport {
    pub rig: &'static str,
    pub calls: usize,
    /// Calls SIPp counted as successful and as failed.
    pub successful_calls: Option<u64>,
    pub failed_calls: Option<u64>,
    /// The most calls the bridge had up at once (`dialtone_calls_active`).
    pub calls_up_max: u64,
    pub duration_s: u64,
    pub rate_per_s: f64,
    pub sipp_exit_code: Option<i32>,
    #[serde(flatten)]
    pub server: ServerFigures,
    pub model_cpu_pct: f64,
    pub sipp_cpu_pct: f64,
}

fn ms_text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"))
}

fn print_server(s: &ServerFigures) {
    println!(
        "server CPU      {:.2} % of a core per call ({:.1} % in all, over {:.1} s)",
        s.server_cpu_pct_per_call, s.server_cpu_pct, s.window_s
    );
    println!(
        "server memory   {:.3} MiB per call (RSS {:.1} MiB idle, {:.1} MiB loaded; peak {:.1} MiB)",
        s.server_rss_per_call_mib, s.server_rss_idle_mib, s.server_rss_end_mib, s.server_vm_hwm_mib
    );
}

fn print_result(report: &impl Serialize) {
    match serde_json::to_string(report) {
        Ok(json) => println!("RESULT {json}"),
        Err(e) => eprintln!("the report could not be encoded: {e}"),
    }
}

impl TwilioReport {
    pub fn print(&self) {
        println!(
            "calls           {} ({} failed), {} s each, {} audio, deltas of {} ms at {}x",
            self.calls, self.failed_calls, self.duration_s, self.format, self.delta_ms, self.speed
        );
        print_server(&self.server);
        if self.latency.latency_samples == 0 {
            let why = if self.format == "pcmu" {
                "no marker arrived"
            } else {
                "the bridge resamples pcm16, so the audio carries no marker"
            };
            println!("latency         - ({why})");
        } else {
            println!(
                "latency         p50 {}, p99 {}, max {} ({} samples, model to caller)",
                ms_text(self.latency.latency_p50_ms),
                ms_text(self.latency.latency_p99_ms),
                ms_text(self.latency.latency_max_ms),
                self.latency.latency_samples
            );
        }
        println!(
            "media received  {:.1} messages per call per second",
            self.media_in_per_call_per_s
        );
        println!(
            "load tools      rig {:.1} %, model {:.1} % of a core",
            self.rig_cpu_pct, self.model_cpu_pct
        );
        print_result(self);
    }
}

impl SipReport {
    pub fn print(&self) {
        let count = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        println!(
            "calls           {} ({} successful, {} failed per SIPp), {} s each, {} per second, at most {} up at once",
            self.calls,
            count(self.successful_calls),
            count(self.failed_calls),
            self.duration_s,
            self.rate_per_s,
            self.calls_up_max
        );
        print_server(&self.server);
        println!(
            "load tools      SIPp {:.1} %, model {:.1} % of a core",
            self.sipp_cpu_pct, self.model_cpu_pct
        );
        print_result(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn latency_in_milliseconds() {
        let l = Latency::from_micros(vec![3_000, 1_000, 2_000, 10_500]);
        assert_eq!(l.latency_samples, 4);
        assert_eq!(l.latency_p50_ms, Some(2.0));
        assert_eq!(l.latency_max_ms, Some(10.5));
        assert_eq!(Latency::from_micros(vec![]).latency_p99_ms, None);
    }

    #[test]
    fn cpu_and_memory_units() {
        assert_eq!(cpu_percent(50, 100, 2.0), 25.0);
        assert_eq!(cpu_percent(50, 100, 0.0), 0.0);
        assert_eq!(mib(2048), 2.0);
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
