//! Child processes of the rigs and what they need: a guard that kills and reaps its child when
//! dropped (so no child outlives the rig, whatever happens), SIGTERM with a grace period, the
//! first stdout line within a time limit, the tail of stderr, free loopback ports, and CPU
//! pinning with `taskset`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Lines of a child's stderr kept for error messages.
const TAIL_LINES: usize = 40;

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    name: String,
}

impl Guarded {
    /// Spawns `command`, naming it `name` in error messages.
    pub fn spawn(command: &mut Command, name: &str) -> Result<Self> {
        let child = command.spawn().with_context(|| {
            let line: Vec<_> = std::iter::once(command.get_program())
                .chain(command.get_args())
                .map(|a| a.to_string_lossy())
                .collect();
            format!("cannot start {name}: {}", line.join(" "))
        })?;
        Ok(Self {
            child,
            name: name.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child, e.g. to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its exit status, if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM, waits up to `grace` for the exit, then kills. Returns the exit status,
    /// `None` if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the first line of `out` within `limit`: `None` if the stream ended or the time ran out
/// first. The reader thread keeps draining the stream afterwards, so the child never blocks on a
/// full pipe.
pub fn first_line(out: impl Read + Send + 'static, limit: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines.by_ref() {}
    });
    rx.recv_timeout(limit).ok()
}

/// The last lines of a child's stderr, collected by a thread.
#[derive(Debug, Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    /// Collects the last lines of `err` until it ends.
    pub fn collect(err: impl Read + Send + 'static) -> Self {
        let tail = Self::default();
        let lines = Arc::clone(&tail.0);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let Ok(mut kept) = lines.lock() else { return };
                if kept.len() == TAIL_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        tail
    }

    /// The lines kept, one per line, or a note that there were none.
    pub fn text(&self) -> String {
        let kept = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        if kept.is_empty() {
            "(nothing on stderr)".to_owned()
        } else {
            Vec::from(kept).join("\n")
        }
    }
}

/// A TCP port on 127.0.0.1 free when asked.
pub fn free_tcp_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A port on 127.0.0.1 free for both TCP and UDP when asked (SIP listens on both).
pub fn free_sip_port() -> Result<u16> {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no port free for both TCP and UDP on 127.0.0.1")
}

/// An even UDP port in 40000-59998 free when asked, with port + 2 free too (SIPp's media
/// ports), above the bridge's RTP range.
pub fn free_media_port() -> Result<u16> {
    for _ in 0..10_000 {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let port = socket.local_addr()?.port();
        if port % 2 == 0
            && (40_000..60_000).contains(&port)
            && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("found no free even UDP port pair in 40000-59999 on 127.0.0.1")
}

/// Pins every thread of this process to `cpu` with `taskset`. Children started afterwards
/// inherit it.
pub fn pin_self(cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run taskset (util-linux) to pin the rig")?;
    if !status.success() {
        bail!("taskset could not pin the rig to CPU {cpu} ({status}); is there such a CPU?");
    }
    Ok(())
}

/// `command` run through `taskset -c cpus`.
pub fn pinned(program: &std::path::Path, cpus: &str) -> Command {
    let mut command = Command::new("taskset");
    command.arg("-c").arg(cpus).arg(program);
    command
}

/// Whether a program can be started from `PATH` (`<name> -v` runs, whatever its status).
pub fn available(name: &str) -> bool {
    Command::new(name)
        .arg("-v")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = Tail::collect(std::io::Cursor::new(text.into_bytes()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tail.text().contains("line 99") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kept = tail.text();
        assert_eq!(kept.lines().count(), TAIL_LINES);
        assert!(kept.starts_with("line 60"));
    }

    #[test]
    fn first_line_or_nothing() {
        let out = std::io::Cursor::new(b"listening on ws://x\nmore\n".to_vec());
        assert_eq!(
            first_line(out, Duration::from_secs(10)).as_deref(),
            Some("listening on ws://x")
        );
        assert_eq!(first_line(std::io::empty(), Duration::from_secs(10)), None);
    }
}
