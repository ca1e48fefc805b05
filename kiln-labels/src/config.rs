//! Agent configuration file (TOML).
//!
//! Every scalar is an `Option` so the CLI can layer flags over a file with
//! [`AgentConfig::merge`]: a `Some` in the override wins, maps are merged
//! key by key (override wins), and `relabel_configs` from the override
//! replace the file's list when present. Defaults are applied only when the
//! merged result is read (`*_or_default` accessors, [`AgentConfig::discovery_options`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::discover::DiscoveryOptions;
use crate::environ::{EnvAllowList, EnvAllowListError};
use crate::labels::is_valid_label_name;
use crate::relabel::{RelabelConfig, RelabelConfigError};

/// Default sampling frequency.
pub const DEFAULT_FREQUENCY_HZ: u32 = 97;
/// Default profile collection (push) interval.
pub const DEFAULT_COLLECT_INTERVAL_SECS: u64 = 15;
/// Upper bound on the sampling frequency; beyond this the profiler itself
/// becomes the main CPU consumer.
pub const MAX_FREQUENCY_HZ: u32 = 10_000;

/// The agent's configuration as read from a file or built from flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Sampling frequency in Hz (default [`DEFAULT_FREQUENCY_HZ`]).
    pub frequency: Option<u32>,
    /// Seconds between profile flushes (default [`DEFAULT_COLLECT_INTERVAL_SECS`]).
    pub collect_interval: Option<u64>,
    /// Labels added to every target, e.g. `region = "us-east-1"`.
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    /// Environment variable allow-list: `NAME = "label"`.
    #[serde(default)]
    pub env_labels: BTreeMap<String, String>,
    /// Discover `__meta_process_cmdline` (default false: command lines
    /// often contain secrets).
    pub include_cmdline: Option<bool>,
    /// Fixed `service_name` for every target (relabeling may still change it).
    pub service_name: Option<String>,
    /// Overrides the discovered host name.
    pub hostname: Option<String>,
    /// Whether the built-in rules run before `relabel_configs` (default true).
    pub default_relabel_rules: Option<bool>,
    /// User relabel rules, applied after the default rules.
    pub relabel_configs: Option<Vec<RelabelConfig>>,
    /// Maximum number of cached targets (default [`crate::DEFAULT_CACHE_CAPACITY`]).
    pub target_cache_size: Option<usize>,
    /// Address of the Prometheus metrics endpoint, e.g. `127.0.0.1:9464`.
    pub metrics_listen_address: Option<SocketAddr>,
    /// Where profiles go.
    #[serde(default)]
    pub exporters: ExporterConfig,
}

/// Destinations for profiles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// Pyroscope-compatible push endpoint.
    pub push_url: Option<String>,
    /// HTTP basic authentication for `push_url`.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token for `push_url` (exclusive with `basic_auth`).
    pub bearer_token: Option<Secret>,
    /// Sent as `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    /// Directory for pprof files.
    pub output_dir: Option<PathBuf>,
}

/// Basic authentication credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password; redacted in Debug output.
    pub password: Secret,
}

/// A string that never shows up in Debug output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML for [`AgentConfig`]; the message names
    /// the line, column and offending key.
    #[error("invalid config{}: {source}", in_file(.path))]
    Parse {
        /// The file, when loaded from one.
        path: Option<PathBuf>,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A relabel rule is invalid.
    #[error("invalid config: relabel_configs[{index}]: {source}")]
    Relabel {
        /// Position in `relabel_configs`.
        index: usize,
        /// What is wrong.
        #[source]
        source: RelabelConfigError,
    },
    /// An `env_labels` entry is invalid.
    #[error("invalid config: {0}")]
    EnvLabels(#[from] EnvAllowListError),
}

fn in_file(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl AgentConfig {
    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: None, source })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: Some(path.to_owned()),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Layers `overrides` (typically from CLI flags) over `self`.
    pub fn merge(mut self, overrides: AgentConfig) -> AgentConfig {
        fn over<T>(base: &mut Option<T>, top: Option<T>) {
            if top.is_some() {
                *base = top;
            }
        }
        let AgentConfig {
            frequency,
            collect_interval,
            static_labels,
            env_labels,
            include_cmdline,
            service_name,
            hostname,
            default_relabel_rules,
            relabel_configs,
            target_cache_size,
            metrics_listen_address,
            exporters,
        } = overrides;
        over(&mut self.frequency, frequency);
        over(&mut self.collect_interval, collect_interval);
        self.static_labels.extend(static_labels);
        self.env_labels.extend(env_labels);
        over(&mut self.include_cmdline, include_cmdline);
        over(&mut self.service_name, service_name);
        over(&mut self.hostname, hostname);
        over(&mut self.default_relabel_rules, default_relabel_rules);
        over(&mut self.relabel_configs, relabel_configs);
        over(&mut self.target_cache_size, target_cache_size);
        over(&mut self.metrics_listen_address, metrics_listen_address);
        let e = &mut self.exporters;
        over(&mut e.push_url, exporters.push_url);
        over(&mut e.basic_auth, exporters.basic_auth);
        over(&mut e.bearer_token, exporters.bearer_token);
        over(&mut e.tenant_id, exporters.tenant_id);
        over(&mut e.output_dir, exporters.output_dir);
        self
    }

    /// Checks ranges and consistency. Called by the loaders; call it again
    /// after [`AgentConfig::merge`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(f) = self.frequency {
            if f == 0 || f > MAX_FREQUENCY_HZ {
                return invalid(format!(
                    "frequency must be 1..={MAX_FREQUENCY_HZ} Hz, got {f}"
                ));
            }
        }
        if self.collect_interval == Some(0) {
            return invalid("collect_interval must be at least 1 second".into());
        }
        if self.target_cache_size == Some(0) {
            return invalid("target_cache_size must be at least 1".into());
        }
        for name in self.static_labels.keys() {
            if !is_valid_label_name(name) || name.starts_with("__") {
                return invalid(format!("invalid static label name {name:?}"));
            }
        }
        if self.service_name.as_deref() == Some("") {
            return invalid("service_name must not be empty".into());
        }
        EnvAllowList::new(self.env_labels.clone())?;
        for (index, rule) in self.relabel_configs.iter().flatten().enumerate() {
            rule.validate()
                .map_err(|source| ConfigError::Relabel { index, source })?;
        }
        if self.exporters.basic_auth.is_some() && self.exporters.bearer_token.is_some() {
            return invalid("exporters: set basic_auth or bearer_token, not both".into());
        }
        Ok(())
    }

    /// Sampling frequency with the default applied.
    pub fn frequency_or_default(&self) -> u32 {
        self.frequency.unwrap_or(DEFAULT_FREQUENCY_HZ)
    }

    /// Collection interval with the default applied.
    pub fn collect_interval_or_default(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.collect_interval
                .unwrap_or(DEFAULT_COLLECT_INTERVAL_SECS),
        )
    }

    /// The labeling part of the configuration, for [`crate::Discoverer::new`].
    pub fn discovery_options(&self) -> Result<DiscoveryOptions, ConfigError> {
        Ok(DiscoveryOptions {
            env_labels: EnvAllowList::new(self.env_labels.clone())?,
            static_labels: self.static_labels.clone(),
            include_cmdline: self.include_cmdline.unwrap_or(false),
            service_name: self.service_name.clone(),
            hostname: self.hostname.clone(),
            default_relabel_rules: self.default_relabel_rules.unwrap_or(true),
            relabel_configs: self.relabel_configs.clone().unwrap_or_default(),
            cache_capacity: self
                .target_cache_size
                .unwrap_or(crate::DEFAULT_CACHE_CAPACITY),
            ..DiscoveryOptions::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::Action;

    const FULL: &str = r#"
        frequency = 49
        collect_interval = 10
        include_cmdline = true
        service_name = "checkout"
        metrics_listen_address = "127.0.0.1:9464"
        target_cache_size = 1000

        [static_labels]
        region = "us-east-1"

        [env_labels]
        REGION = "region"
        APP_VERSION = "version"

        [[relabel_configs]]
        source_labels = ["__meta_process_executable_name"]
        regex = "sleep"
        action = "drop"

        [[relabel_configs]]
        source_labels = ["__meta_container_id"]
        regex = "(.{12}).*"
        target_label = "short_id"

        [exporters]
        push_url = "http://127.0.0.1:4040"
        tenant_id = "team-a"
        output_dir = "/var/lib/kiln/profiles"

        [exporters.basic_auth]
        username = "kiln"
        password = "s3cr3t-pass"
    "#;

    #[test]
    fn parses_full_config() {
        let c = AgentConfig::from_toml_str(FULL).expect("valid config");
        assert_eq!(c.frequency, Some(49));
        assert_eq!(c.collect_interval_or_default().as_secs(), 10);
        assert_eq!(c.static_labels["region"], "us-east-1");
        assert_eq!(c.env_labels["APP_VERSION"], "version");
        assert_eq!(c.include_cmdline, Some(true));
        let rules = c.relabel_configs.as_ref().expect("rules");
        assert_eq!(rules[0].action, Action::Drop);
        assert_eq!(rules[1].target_label.as_deref(), Some("short_id"));
        assert_eq!(
            c.metrics_listen_address,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        let auth = c.exporters.basic_auth.as_ref().expect("auth");
        assert_eq!(auth.password.expose(), "s3cr3t-pass");
        assert_eq!(c.exporters.tenant_id.as_deref(), Some("team-a"));
        let opts = c.discovery_options().expect("options");
        assert_eq!(opts.cache_capacity, 1000);
        assert!(opts.include_cmdline);
    }

    #[test]
    fn debug_output_redacts_credentials() {
        let mut c = AgentConfig::from_toml_str(FULL).expect("valid config");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t-pass"), "{debug}");
        c.exporters.basic_auth = None;
        c.exporters.bearer_token = Some(Secret::new("tok-123"));
        assert!(!format!("{c:?}").contains("tok-123"));
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = AgentConfig::from_toml_str(include_str!("../agent.example.toml"))
            .expect("agent.example.toml must stay valid");
        assert_eq!(c.env_labels["APP_VERSION"], "version");
        assert_eq!(c.relabel_configs.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn empty_config_uses_defaults() {
        let c = AgentConfig::from_toml_str("").expect("empty is valid");
        assert_eq!(c.frequency_or_default(), DEFAULT_FREQUENCY_HZ);
        let opts = c.discovery_options().expect("options");
        assert!(!opts.include_cmdline);
        assert!(opts.default_relabel_rules);
        assert!(opts.env_labels.is_empty());
    }

    fn parse_err(text: &str) -> String {
        AgentConfig::from_toml_str(text)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn rejects_unknown_fields_naming_them() {
        let e = parse_err("frequncy = 99");
        assert!(e.contains("frequncy"), "{e}");
        let e = parse_err("[exporters]\npush_uri = \"x\"");
        assert!(e.contains("push_uri"), "{e}");
        let e = parse_err("[[relabel_configs]]\ntarget = \"x\"");
        assert!(e.contains("target"), "{e}");
    }

    #[test]
    fn rejects_bad_types_and_syntax_with_location() {
        let e = parse_err("frequency = \"fast\"");
        assert!(e.contains("frequency") || e.contains("line 1"), "{e}");
        let e = parse_err("frequency = 9\n[static_labels\n");
        assert!(e.contains("line 2"), "{e}");
        let e = parse_err("metrics_listen_address = \"nowhere\"");
        assert!(
            e.contains("metrics_listen_address") || e.contains("address"),
            "{e}"
        );
    }

    #[test]
    fn rejects_invalid_values() {
        assert!(parse_err("frequency = 0").contains("frequency"));
        assert!(parse_err("frequency = 100000").contains("frequency"));
        assert!(parse_err("collect_interval = 0").contains("collect_interval"));
        assert!(parse_err("[static_labels]\n\"bad-name\" = \"x\"").contains("bad-name"));
        assert!(parse_err("[env_labels]\n\"A-B\" = \"x\"").contains("A-B"));
        let e = parse_err("[[relabel_configs]]\naction = \"hashmod\"\ntarget_label = \"x\"");
        assert!(
            e.contains("relabel_configs[0]") && e.contains("modulus"),
            "{e}"
        );
        let e = parse_err(
            "[exporters]\nbearer_token = \"t\"\n[exporters.basic_auth]\nusername = \"u\"\npassword = \"p\"",
        );
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn from_file_reports_path() {
        let dir = std::env::temp_dir().join(format!("kiln-labels-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.toml");
        std::fs::write(&good, "frequency = 19\n").expect("write");
        assert_eq!(
            AgentConfig::from_file(&good).expect("loads").frequency,
            Some(19)
        );
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "frequency = \n").expect("write");
        let e = AgentConfig::from_file(&bad).expect_err("bad").to_string();
        assert!(e.contains("bad.toml"), "{e}");
        let e = AgentConfig::from_file(dir.join("missing.toml"))
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("missing.toml") && e.contains("cannot read"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn merge_prefers_overrides_and_merges_maps() {
        let file = AgentConfig::from_toml_str(FULL).expect("valid");
        let flags = AgentConfig::from_toml_str(
            "frequency = 99\n[static_labels]\nregion = \"eu-west-1\"\nteam = \"core\"\n[exporters]\ntenant_id = \"team-b\"",
        )
        .expect("valid");
        let merged = file.clone().merge(flags);
        assert_eq!(merged.frequency, Some(99));
        assert_eq!(
            merged.collect_interval,
            Some(10),
            "unset in flags keeps file value"
        );
        assert_eq!(merged.static_labels["region"], "eu-west-1");
        assert_eq!(merged.static_labels["team"], "core");
        assert_eq!(merged.exporters.tenant_id.as_deref(), Some("team-b"));
        assert_eq!(merged.exporters.push_url, file.exporters.push_url);
        assert_eq!(merged.relabel_configs, file.relabel_configs);
        merged.validate().expect("still valid");
    }
}
