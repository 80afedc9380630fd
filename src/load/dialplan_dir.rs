//! The dialplan directory of a load run: a temporary directory with one default route, removed
//! when the run ends.
//!
//! The route has no greeting, no tools and no turn detection settings. The model is the load
//! model, which ignores turn detection and speaks on its own schedule, so the bridge only
//! forwards audio both ways. The route leaves `turn_detection` out on purpose: every build,
//! old ones included, accepts the default (server VAD, which only reaches the
//! `session.update`), while `type = "none"` is newer.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// The audio format of the route, as a dialplan names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteFormat {
    /// µ-law passed through both ways (carries the latency marker).
    Pcmu,
    /// PCM16 at 24 kHz: the bridge transcodes and resamples both ways (no latency marker).
    Pcm16,
}

impl RouteFormat {
    pub fn dialplan_name(self) -> &'static str {
        match self {
            Self::Pcmu => "pcmu",
            Self::Pcm16 => "pcm16",
        }
    }
}

/// A temporary dialplan directory, removed on drop.
#[derive(Debug)]
pub struct DialplanDir {
    path: PathBuf,
}

impl DialplanDir {
    /// Creates it under the system's temporary directory.
    pub fn create(format: RouteFormat) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("dialtone-load-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let dir = Self { path };
        let file = dir.path.join("load.toml");
        std::fs::write(&file, route(format))
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DialplanDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The dialplan file's text.
pub fn route(format: RouteFormat) -> String {
    format!(
        "# Written by `dialtone load` for one run, then removed.\n\
         [[route]]\n\
         name = \"load\"\n\
         match = {{ default = true }}\n\
         model = \"load-model\"\n\
         audio_format = \"{}\"\n\
         instructions = \"Load test.\"\n",
        format.dialplan_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_passes_the_dialplan_checker_and_is_removed() {
        for format in [RouteFormat::Pcmu, RouteFormat::Pcm16] {
            let dir = DialplanDir::create(format).unwrap();
            let summary = crate::dialplan::check(dir.path()).expect("valid dialplan");
            assert!(summary.to_string().contains("load"), "{summary}");
            let path = dir.path().to_path_buf();
            drop(dir);
            assert!(!path.exists());
        }
    }
}
