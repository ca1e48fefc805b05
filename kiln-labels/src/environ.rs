//! Reading allow-listed variables from `/proc/<pid>/environ`.
//!
//! The agent runs as root and can read every process's environment, which
//! routinely holds credentials. So: only variables named in the allow-list
//! are ever copied out of the raw buffer; the buffer is zeroed and dropped
//! before returning; errors carry the pid and the I/O error kind only; and
//! nothing here logs.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

/// Allow-listed environment variables: variable name -> final label name
/// (`REGION` -> `region`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvAllowList {
    names: BTreeMap<String, String>,
}

/// Why an allow-list entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvAllowListError {
    /// The variable name is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error(
        "invalid environment variable name {0:?} in env_labels (allowed: [A-Za-z_][A-Za-z0-9_]*)"
    )]
    InvalidVariable(String),
    /// The label name is not a valid Prometheus label name.
    #[error("invalid label name {label:?} for environment variable {variable} in env_labels")]
    InvalidLabel {
        /// The variable it maps from.
        variable: String,
        /// The offending label name.
        label: String,
    },
}

impl EnvAllowList {
    /// Builds an allow-list from `NAME -> label` pairs, validating both.
    pub fn new<I, K, V>(pairs: I) -> Result<Self, EnvAllowListError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut names = BTreeMap::new();
        for (variable, label) in pairs {
            let (variable, label) = (variable.into(), label.into());
            if !crate::labels::is_valid_env_name(&variable) {
                return Err(EnvAllowListError::InvalidVariable(variable));
            }
            if !crate::labels::is_valid_label_name(&label) || label.starts_with("__") {
                return Err(EnvAllowListError::InvalidLabel { variable, label });
            }
            names.insert(variable, label);
        }
        Ok(Self { names })
    }

    /// Whether no variable is allowed (then environ is never read).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `(variable, label)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn allows(&self, name: &[u8]) -> Option<&str> {
        let name = std::str::from_utf8(name).ok()?;
        self.names.get_key_value(name).map(|(k, _)| k.as_str())
    }

    /// Extracts allowed variables from a raw environ block (`NAME=value`
    /// entries separated by NUL). The first occurrence of a name wins, as
    /// with `getenv`. Entries for other names are skipped without copying.
    pub fn extract(&self, environ: &[u8]) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        if self.is_empty() {
            return found;
        }
        for entry in environ.split(|&b| b == 0) {
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                continue;
            };
            let Some(name) = self.allows(&entry[..eq]) else {
                continue;
            };
            if !found.contains_key(name) {
                let value = String::from_utf8_lossy(&entry[eq + 1..]).into_owned();
                found.insert(name.to_owned(), value);
            }
        }
        found
    }
}

/// Lists only the allowed names; there are no values to hide here, but a
/// custom impl keeps this type's Debug output deliberate.
impl fmt::Debug for EnvAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.names.iter()).finish()
    }
}

/// Reads the allowed variables of a process. Returns an empty map without
/// touching environ when the allow-list is empty.
pub fn read_allowed(
    process: &procfs::process::Process,
    allow: &EnvAllowList,
) -> Result<BTreeMap<String, String>, procfs::ProcError> {
    if allow.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut file = process.open_relative("environ")?;
    let mut raw = Vec::with_capacity(4096);
    let read = file.read_to_end(&mut raw);
    let found = allow.extract(&raw);
    wipe(&mut raw);
    drop(raw);
    read.map_err(|e| {
        // Rebuild the error from its kind alone so no payload can leak.
        procfs::ProcError::Io(std::io::Error::from(e.kind()), None)
    })?;
    Ok(found)
}

/// Zeroes the buffer before it is freed so the environment does not linger
/// in freed heap memory. `black_box` stops the stores from being elided as
/// dead writes.
fn wipe(buf: &mut Vec<u8>) {
    buf.fill(0);
    std::hint::black_box(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(pairs: &[(&str, &str)]) -> EnvAllowList {
        EnvAllowList::new(pairs.iter().copied()).expect("valid allow-list")
    }

    const ENVIRON: &[u8] =
        b"PATH=/usr/bin\0SECRET=hunter2\0REGION=us-west-1\0REGIONX=no\0XREGION=no\0REGION=second\0EMPTY=\0NOEQUALS\0";

    #[test]
    fn only_allowed_names_are_returned() {
        let got = allow(&[("REGION", "region")]).extract(ENVIRON);
        assert_eq!(got.len(), 1);
        assert_eq!(got.get("REGION").map(String::as_str), Some("us-west-1"));
        let debug = format!("{got:?}");
        for forbidden in ["hunter2", "SECRET", "/usr/bin", "PATH", "second", "no\""] {
            assert!(!debug.contains(forbidden), "{forbidden} leaked: {debug}");
        }
    }

    #[test]
    fn exact_name_match_first_occurrence_and_empty_values() {
        let got =
            allow(&[("REGION", "region"), ("EMPTY", "empty"), ("NOEQUALS", "n")]).extract(ENVIRON);
        assert_eq!(got.get("REGION").map(String::as_str), Some("us-west-1"));
        assert_eq!(got.get("EMPTY").map(String::as_str), Some(""));
        // An entry without '=' has no value; it is not reported.
        assert!(!got.contains_key("NOEQUALS"));
        assert!(!got.contains_key("REGIONX"));
    }

    #[test]
    fn values_may_contain_equals_and_non_utf8() {
        let got = allow(&[("A", "a"), ("B", "b")]).extract(b"A=x=y\0B=\xffok");
        assert_eq!(got.get("A").map(String::as_str), Some("x=y"));
        assert_eq!(got.get("B").map(String::as_str), Some("\u{fffd}ok"));
    }

    #[test]
    fn empty_allow_list_extracts_nothing() {
        assert!(EnvAllowList::default().extract(ENVIRON).is_empty());
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert_eq!(
            EnvAllowList::new([("BAD-NAME", "x")]),
            Err(EnvAllowListError::InvalidVariable("BAD-NAME".into()))
        );
        assert!(matches!(
            EnvAllowList::new([("OK", "bad label")]),
            Err(EnvAllowListError::InvalidLabel { .. })
        ));
        assert!(matches!(
            EnvAllowList::new([("OK", "__hidden")]),
            Err(EnvAllowListError::InvalidLabel { .. })
        ));
    }

    #[test]
    fn reads_own_process_environ_allow_listed_only() {
        // The test binary's own environment: PATH is virtually always set,
        // and must not be returned unless allowed.
        let me = procfs::process::Process::myself().expect("own /proc entry");
        let got = read_allowed(&me, &allow(&[("KILN_SURELY_UNSET_VAR", "x")])).expect("read");
        assert!(got.is_empty(), "{got:?}");
        let got = read_allowed(&me, &allow(&[("PATH", "path")])).expect("read");
        assert_eq!(got.get("PATH"), std::env::var("PATH").ok().as_ref());
    }
}
