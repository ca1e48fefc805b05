//! Files `kiln record` writes, chosen by the output's extension.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _};
use prost::Message;

use crate::aggregate::Aggregate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// gzip'd pprof (`.pb.gz`).
    Pprof,
    /// Folded stacks (`.folded`), one `process;frame;...;leaf count` line per stack.
    Folded,
    /// Interactive flame graph (`.svg`).
    Svg,
}

impl Format {
    pub fn from_path(path: &Path) -> anyhow::Result<Self> {
        let name = path.to_string_lossy();
        if name.ends_with(".pb.gz") || name.ends_with(".pprof") {
            Ok(Format::Pprof)
        } else if name.ends_with(".folded") || name.ends_with(".txt") {
            Ok(Format::Folded)
        } else if name.ends_with(".svg") {
            Ok(Format::Svg)
        } else {
            bail!("cannot tell the format of {name}: name it *.pb.gz (pprof), *.folded or *.svg")
        }
    }
}

/// Fails early, before sampling, if the output cannot be created.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let existed = path.exists();
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write the output file {}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

pub struct WriteInfo<'a> {
    pub window: (SystemTime, Duration),
    pub frequency: u64,
    pub title: &'a str,
}

pub fn write(
    path: &Path,
    format: Format,
    agg: &Aggregate,
    info: &WriteInfo<'_>,
) -> anyhow::Result<()> {
    // Write to a temporary name, then rename: an interrupted write leaves no torn file.
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    match format {
        Format::Pprof => {
            let profile = agg.to_pprof(info.window, info.frequency, &[], |_| true);
            out.write_all(&kiln_proto::gzip::compress(&profile.encode_to_vec()))?;
        }
        Format::Folded => {
            for line in agg.folded_lines() {
                writeln!(out, "{line}")?;
            }
        }
        Format::Svg => {
            let lines = agg.folded_lines();
            let mut options = inferno::flamegraph::Options::default();
            options.title = info.title.to_owned();
            options.count_name = "samples".to_owned();
            options.colors =
                inferno::flamegraph::Palette::Multi(inferno::flamegraph::color::MultiPalette::Java);
            if lines.is_empty() {
                bail!("no samples were recorded, so there is no flame graph to draw");
            }
            inferno::flamegraph::from_lines(
                &mut options,
                lines.iter().map(String::as_str),
                &mut out,
            )
            .context("rendering the flame graph failed")?;
        }
    }
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("writing {} failed", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
