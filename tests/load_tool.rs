//! `dialtone load twilio` end to end: the built binary starts the load model and a server of
//! its own, places three short calls, and prints a `RESULT` line that says every call worked and
//! latency markers came through. No timing figure is checked: they depend on the machine.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_short_twilio_run_reports_every_call_and_latency_samples() {
    let output = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["load", "twilio", "--calls", "3", "--duration-s", "8"])
        .env_remove("RUST_LOG")
        .output()
        .expect("dialtone runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "load twilio failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("no parsable RESULT line:\n{stdout}\n{stderr}"));
    assert_eq!(result["rig"], "twilio");
    assert_eq!(result["calls"], 3);
    assert_eq!(result["failed_calls"], 0, "{result}\n{stderr}");
    assert!(
        result["latency_samples"].as_u64().is_some_and(|n| n > 0),
        "no latency marker arrived: {result}\n{stderr}"
    );
    for key in [
        "server_cpu_pct_per_call",
        "server_rss_per_call_mib",
        "media_in_per_call_per_s",
    ] {
        assert!(result[key].is_number(), "{key} missing: {result}");
    }
}
