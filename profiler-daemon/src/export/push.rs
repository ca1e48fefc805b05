//! Push to a Pyroscope-compatible server (Kiln's own server or Grafana Pyroscope): a
//! Connect unary call `POST <url>/push.v1.PusherService/Push` with a protobuf
//! `PushRequest` (`content-type: application/proto`). Each series carries the labels
//! `__name__="process_cpu"`, `service_name` and the target's other labels; its raw
//! profile is the gzip'd pprof of that window. A window is split into several requests
//! when it would exceed [`MAX_REQUEST_BYTES`].
//!
//! Status handling: 2xx is success; 408, 429 and 5xx, timeouts and connection errors are
//! retried; other 4xx mean the server will never accept this window (bad auth, invalid
//! data) and drop it.

use std::time::Duration;

use anyhow::{bail, Context as _};
use kiln_proto::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use prost::Message;

use super::{Batch, ExportError, ExportFuture, ExportSettings, Flavor, Sink};

pub const PUSH_PATH: &str = "/push.v1.PusherService/Push";
/// Largest request body we build; servers commonly cap requests at a few MiB.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

pub struct PushSink {
    client: reqwest::Client,
    endpoint: String,
    /// The URL without credentials, for logs and metrics.
    shown: String,
    auth: Auth,
    tenant_id: Option<String>,
}

enum Auth {
    None,
    Basic(String, kiln_labels::Secret),
    Bearer(kiln_labels::Secret),
}

/// Checks a push URL up front so that a typo fails at start, not on every push.
pub fn check_url(url: &str) -> anyhow::Result<reqwest::Url> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("invalid --push-url {}", redact(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!(
            "invalid --push-url {}: use http(s)://HOST[:PORT][/PATH]",
            redact(url)
        );
    }
    Ok(parsed)
}

/// The URL with any `user:password@` removed.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "<unparsable url>".to_owned(),
    }
}

impl PushSink {
    pub fn new(url: &str, settings: &ExportSettings) -> anyhow::Result<Self> {
        let parsed = check_url(url)?;
        let mut auth = match (&settings.basic_auth, &settings.bearer_token) {
            (Some(b), _) => Auth::Basic(b.username.clone(), b.password.clone()),
            (None, Some(t)) => Auth::Bearer(t.clone()),
            (None, None) => Auth::None,
        };
        // Credentials in the URL itself (http://user:pass@host) work too.
        if matches!(auth, Auth::None) && !parsed.username().is_empty() {
            auth = Auth::Basic(
                parsed.username().to_owned(),
                kiln_labels::Secret::new(parsed.password().unwrap_or("")),
            );
        }
        let mut clean = parsed.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        let base = clean.as_str().trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(2)
            .user_agent(concat!("kiln-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client failed")?;
        Ok(Self {
            client,
            endpoint: format!("{base}{PUSH_PATH}"),
            shown: base,
            auth,
            tenant_id: settings.tenant_id.clone(),
        })
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let mut req = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/proto")
            .header("connect-protocol-version", "1")
            .body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic(user, pass) => req.basic_auth(user, Some(pass.expose())),
            Auth::Bearer(token) => req.bearer_auth(token.expose()),
        };
        if let Some(t) = &self.tenant_id {
            req = req.header("X-Scope-OrgID", t);
        }
        let resp = req.send().await.map_err(|e| {
            // reqwest's error text names the URL; ours carries no credentials.
            ExportError::retryable(format!("request failed: {}", error_chain(&e)))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        let message = format!("server answered {status}: {}", body.trim());
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(ExportError::retryable(message))
        } else {
            Err(ExportError::permanent(message))
        }
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "error".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The push requests for one window: one series per target, split to stay under
/// `max_bytes` per request.
pub fn requests(batch: &Batch, max_bytes: usize) -> Vec<PushRequest> {
    let mut out = Vec::new();
    let mut current = PushRequest::default();
    let mut size = 0;
    for s in &batch.series {
        let Some(raw) = s.compact.as_ref() else {
            continue;
        };
        let series = RawProfileSeries {
            labels: s
                .labels
                .iter()
                .map(|(k, v)| LabelPair::new(k.as_str(), v.as_str()))
                .collect(),
            samples: vec![RawSample {
                raw_profile: raw.clone(),
                id: String::new(),
            }],
            annotations: vec![],
        };
        let len = series.encoded_len() + 8;
        if size > 0 && size + len > max_bytes {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.series.push(series);
    }
    if !current.series.is_empty() {
        out.push(current);
    }
    out
}

impl Sink for PushSink {
    fn kind(&self) -> &'static str {
        "push"
    }

    fn destination(&self) -> String {
        self.shown.clone()
    }

    fn flavor(&self) -> Flavor {
        Flavor::Compact
    }

    fn export<'a>(&'a self, batch: &'a Batch) -> ExportFuture<'a> {
        Box::pin(async move {
            // A retry resends the whole window: partial success of a split window may
            // duplicate a part, which is better than losing it.
            for req in requests(batch, MAX_REQUEST_BYTES) {
                self.send(req.encode_to_vec()).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::SeriesProfile;
    use std::time::SystemTime;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("https://user:pa55@example.com:4040/base/"),
            "https://example.com:4040/base"
        );
        assert!(!redact("http://u:secret@h").contains("secret"));
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("not a url").is_err());
        let e = check_url("http//user:hunter2@").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn splits_large_windows() {
        let series = (0..10)
            .map(|i| SeriesProfile {
                labels: vec![("service_name".into(), format!("s{i}"))],
                series_key: i,
                samples: 1,
                detailed: None,
                compact: Some(vec![7; 1000]),
            })
            .collect();
        let batch = Batch {
            seq: 0,
            start: SystemTime::now(),
            duration: Duration::from_secs(1),
            series,
        };
        let one = requests(&batch, 1 << 20);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].series.len(), 10);
        let split = requests(&batch, 2500);
        assert_eq!(split.len(), 5);
        assert_eq!(split.iter().map(|r| r.series.len()).sum::<usize>(), 10);
    }
}
