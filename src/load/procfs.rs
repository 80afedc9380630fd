//! CPU time and memory of a process, from Linux's `/proc`: user plus system time from
//! `/proc/<pid>/stat` (in clock ticks, all threads), resident and peak resident memory
//! (`VmRSS`, `VmHWM`) from `/proc/<pid>/status`.
//!
//! Clock ticks per second come from `getconf CLK_TCK`; when that cannot be run, 100 is assumed
//! (the value on every mainstream Linux architecture).

use std::process::Command;

use anyhow::{Context, Result};

/// A process to read: one by id, or this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    Of(u32),
    This,
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::Of(pid) => format!("/proc/{pid}"),
            Self::This => "/proc/self".to_owned(),
        }
    }
}

/// User plus system CPU time of `pid` in clock ticks.
pub fn cpu_ticks(pid: Pid) -> Result<u64> {
    let path = format!("{}/stat", pid.dir());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("{path} has no utime/stime fields"))
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident.
    pub hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: Pid) -> Result<Memory> {
    let path = format!("{}/status", pid.dir());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_status(&text))
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted after the last `)`:
/// state is field 3, utime field 14, stime field 15.
pub fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` and `VmHWM` (kB lines) of a `/proc/<pid>/status` text; 0 when absent.
pub fn parse_status(text: &str) -> Memory {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1`), if known.
pub fn allowed_cpus() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (dial tone (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat(line), Some(325));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_memory_lines() {
        let text = "Name:\tdialtone\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(text),
            Memory {
                rss_kib: 10240,
                hwm_kib: 20480
            }
        );
        assert_eq!(parse_status("Name:\tkthread\n"), Memory::default());
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(cpu_ticks(Pid::This).is_ok());
        assert!(memory(Pid::This).unwrap().rss_kib > 0);
        assert!(clock_ticks() > 0);
    }
}
