//! Writes one gzip'd pprof file per series and window:
//! `<dir>/<service_name>-<series key>-<window start unix s>.pb.gz`, written to a hidden
//! temporary file and renamed, so readers never see a partial file. The profile's samples
//! carry the series labels (plus pid, process, thread), so `go tool pprof -tags` shows
//! them.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::{Batch, ExportError, ExportFuture, Flavor, Sink};

pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// Creates the directory if needed and checks that it is writable.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --output-dir {}", dir.display()))?;
        let probe = dir.join(format!(".kiln-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .with_context(|| format!("--output-dir {} is not writable", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn write_batch(dir: &Path, batch: &Batch) -> std::io::Result<()> {
        let start = batch.start_unix_secs();
        for s in &batch.series {
            let Some(bytes) = &s.detailed else { continue };
            let service = sanitize(s.label("service_name").unwrap_or("unknown"));
            let name = format!("{service}-{:016x}-{start}.pb.gz", s.series_key);
            let tmp = dir.join(format!(".{name}.tmp"));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            drop(f);
            std::fs::rename(&tmp, dir.join(&name)).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
        }
        Ok(())
    }
}

/// File-name-safe form: `[A-Za-z0-9._-]` kept, the rest `_`, at most 64 bytes, never
/// starting with a dot.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

impl Sink for DirSink {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn destination(&self) -> String {
        self.dir.display().to_string()
    }

    fn flavor(&self) -> Flavor {
        Flavor::Detailed
    }

    fn export<'a>(&'a self, batch: &'a Batch) -> ExportFuture<'a> {
        Box::pin(async move {
            let dir = self.dir.clone();
            // Blocking file I/O off the async workers; the batch is shared, so borrow it
            // through a scoped block_in_place instead of cloning it.
            tokio::task::block_in_place(|| Self::write_batch(&dir, batch)).map_err(|e| {
                // A full or read-only disk may recover; keep retrying within the bounds.
                ExportError::retryable(format!("writing to {} failed: {e}", dir.display()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("shop/api"), "shop_api");
        assert_eq!(sanitize("../etc"), "_.._etc");
        assert_eq!(sanitize(""), "_");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 64);
    }
}
