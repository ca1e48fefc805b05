//! Kiln's HTTP server: a Pyroscope-compatible push and query API over [`kiln_store`],
//! plus the web UI embedded from `ui/dist`.
//!
//! # Embedding
//!
//! Stand-alone (`kiln server`): parse [`ServerArgs`] with clap (`#[command(flatten)]`) and
//! call [`serve`], which opens the store, serves until `shutdown` resolves, then closes
//! the store cleanly.
//!
//! In one process with the agent (`kiln run`): open the store once, give the agent an
//! `Arc<Store>` and serve HTTP on the same store:
//!
//! ```no_run
//! # async fn f(args: kiln_server::ServerArgs) -> anyhow::Result<()> {
//! let store = std::sync::Arc::new(kiln_server::open_store(&args)?);
//! let agent_store = store.clone(); // the agent calls agent_store.ingest(IngestRequest{..})
//! // (blocking: call it from a plain thread or tokio::task::spawn_blocking;
//! //  Ok means durable — it survives kill -9)
//! kiln_server::serve_store(store.clone(), args.listen, args.limits(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }).await?;
//! store.close()?;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! | method, path | what |
//! | --- | --- |
//! | `POST /push.v1.PusherService/Push` | Connect unary push (`application/proto` or `application/json`, optional `content-encoding: gzip`) |
//! | `POST /ingest` | legacy push: folded, lines, pprof, multipart |
//! | `GET /api/v1/profile-types` | profile type ids present |
//! | `GET /pyroscope/label-names`, `/pyroscope/label-values?label=` | label names / values (`query`, `from`, `until` optional; default: all data) |
//! | `GET /pyroscope/render` | flamebearer + timeline (+ `groups` with `groupBy`) |
//! | `GET /pyroscope/render-diff` | diff flamebearer (`format: double`) |
//! | `GET /api/v1/group-totals` | totals and timelines per value of `groupBy` |
//! | `GET /api/v1/export?format=pprof\|folded` | gzip'd pprof or folded text |
//! | `POST /querier.v1.QuerierService/{ProfileTypes,LabelNames,LabelValues}` | JSON only |
//! | `GET /metrics`, `GET /healthz` | Prometheus metrics, liveness |
//! | `GET /*` | the web UI (SPA fallback to `index.html`) |
//!
//! Access ([`access`]): with a token every route but `/healthz` needs it (bearer or
//! basic-auth password); on a loopback address only loopback `Host` names are answered.
//! Pushes are decoded within a per-request [`limits::RequestBudget`] and at most
//! `max_concurrent_ingests` at once.
//!
//! Times: unix seconds, unix ms, `now`, `now-1h`... Errors are Connect-style JSON
//! `{"code":"invalid_argument","message":"..."}` with a 4xx/5xx status.
//!
//! Flame graph units: values are kept in the profile's own unit. For time in nanoseconds
//! the metadata says `units: "samples"`, `sampleRate: 1000000000`, which is what Grafana
//! Pyroscope sends and makes the UI show `ticks / sampleRate` seconds; sample counts use
//! `sampleRate = 1e9 / period` (100 for a 10 ms period).

pub mod access;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod timeparse;
pub mod ui_assets;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use kiln_store::{Store, StoreOptions};

pub use access::{Access, Token};
pub use limits::Limits;
pub use metrics::Metrics;

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    timeparse::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    timeparse::parse_size(s).map_err(|e| e.to_string())
}

/// Flags of `kiln server` (and the server part of `kiln run`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on. Loopback by default, where only requests addressed to
    /// localhost, 127.x or `[::1]` are answered (against DNS rebinding). Any other address
    /// needs --auth-token-file (or --insecure-no-auth).
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:4040")]
    pub listen: SocketAddr,

    /// File whose first line is the token every request must carry, as
    /// `Authorization: Bearer <token>` or as the password of HTTP basic auth (any user
    /// name; browsers prompt for it). Applies to push, query and UI; /healthz stays open
    /// for liveness probes. Agents send it with --bearer-token / KILN_BEARER_TOKEN.
    #[arg(long, env = "KILN_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Serve a non-loopback --listen address without authentication: anyone who can
    /// reach it can read every profile and push data. Only behind an authenticating
    /// proxy or a network policy you trust.
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// Directory of the profile database (file kiln.redb). Default: /var/lib/kiln when
    /// running as root, else $XDG_DATA_HOME/kiln (~/.local/share/kiln).
    #[arg(long, env = "KILN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Delete profiles older than this (e.g. 7d, 12h; 0 keeps them forever).
    #[arg(long, env = "KILN_RETENTION_AGE", default_value = "30d", value_parser = parse_duration_arg)]
    pub retention_age: Duration,

    /// Delete the oldest profiles while the database is larger than this (e.g. 10GiB,
    /// 500MB; 0 means no size limit).
    #[arg(long, env = "KILN_RETENTION_SIZE", default_value = "0", value_parser = parse_size_arg)]
    pub retention_size: u64,

    /// Largest request body accepted, as sent (compressed), e.g. 4MiB.
    #[arg(long, default_value = "4MiB", value_parser = parse_size_arg)]
    pub max_body_bytes: u64,

    /// Largest profile after decompression; larger ones (and gzip bombs) are refused.
    #[arg(long, default_value = "16MiB", value_parser = parse_size_arg)]
    pub max_profile_bytes: u64,

    /// Memory one push may take to decompress and decode its profiles, all together;
    /// checked before decoding, so a push over it is refused (413) without the memory
    /// being taken.
    #[arg(long, default_value = "128MiB", value_parser = parse_size_arg)]
    pub max_request_memory: u64,

    /// Samples one push may carry, across all of its profiles.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_request_samples: u64,

    /// Pushes decoded and stored at once; more wait up to 5 s, then get 429 with
    /// Retry-After. Peak ingest memory is about this times --max-request-memory.
    #[arg(long, default_value_t = 2)]
    pub max_concurrent_ingests: usize,

    /// Frames kept per stack; deeper stacks keep their leaf-most frames.
    #[arg(long, default_value_t = 1000)]
    pub max_stack_depth: usize,

    /// Flame graph nodes returned when a query does not set maxNodes (the lightest are
    /// merged into "other").
    #[arg(long, default_value_t = 8192)]
    pub max_nodes: usize,

    /// Most series (label sets x profile types) the store accepts; bounds memory.
    #[arg(long, default_value_t = 200_000)]
    pub max_series: usize,
}

impl Default for ServerArgs {
    fn default() -> Self {
        ServerArgs {
            listen: "127.0.0.1:4040".parse().expect("valid"),
            auth_token_file: None,
            insecure_no_auth: false,
            data_dir: None,
            retention_age: Duration::from_secs(30 * 86400),
            retention_size: 0,
            max_body_bytes: 4 << 20,
            max_profile_bytes: 16 << 20,
            max_request_memory: 128 << 20,
            max_request_samples: 1_000_000,
            max_concurrent_ingests: 2,
            max_stack_depth: 1000,
            max_nodes: 8192,
            max_series: 200_000,
        }
    }
}

/// `/var/lib/kiln` for root, else `$XDG_DATA_HOME/kiln` or `~/.local/share/kiln`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("kiln");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/kiln")
}

impl ServerArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes as usize,
            max_profile_bytes: self.max_profile_bytes as usize,
            max_request_memory: self.max_request_memory,
            max_request_samples: self.max_request_samples,
            max_concurrent_ingests: self.max_concurrent_ingests.max(1),
            max_stack_depth: self.max_stack_depth,
            max_nodes: self.max_nodes.max(1),
            ..Limits::default()
        }
    }

    /// The access rules the flags ask for: reads the token file, and refuses a
    /// non-loopback address without a token unless --insecure-no-auth.
    pub fn access(&self) -> anyhow::Result<Access> {
        let token = match &self.auth_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --auth-token-file {}", path.display()))?;
                Some(Token::parse(&text).with_context(|| {
                    format!(
                        "--auth-token-file {} is empty: write a token on its first line",
                        path.display()
                    )
                })?)
            }
            None => None,
        };
        if token.is_none() && !self.listen.ip().is_loopback() && !self.insecure_no_auth {
            anyhow::bail!(
                "refusing to serve {} without authentication: pass --auth-token-file FILE, or --insecure-no-auth if a proxy or network policy you trust guards it",
                self.listen
            );
        }
        Ok(Access {
            token,
            ..Access::for_listen(self.listen)
        })
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            retention_age: (!self.retention_age.is_zero()).then_some(self.retention_age),
            retention_bytes: (self.retention_size > 0).then_some(self.retention_size),
            max_series: self.max_series,
            max_stack_depth: self.max_stack_depth,
            ..StoreOptions::default()
        }
    }
}

/// Opens the store the flags describe.
pub fn open_store(args: &ServerArgs) -> anyhow::Result<Store> {
    let dir = args.data_dir();
    Store::open(&dir, args.store_options())
        .with_context(|| format!("opening the profile store in {}", dir.display()))
}

/// The HTTP application over `store`, open to all (tests and embedding).
pub fn router(store: Arc<Store>, limits: Limits) -> Router {
    router_with_access(store, limits, Access::default())
}

/// The HTTP application over `store`, behind `access`.
pub fn router_with_access(store: Arc<Store>, limits: Limits, access: Access) -> Router {
    let state: routes::AppState = Arc::new(routes::Inner {
        store,
        access,
        queries: tokio::sync::Semaphore::new(limits.max_concurrent_queries.max(1)),
        ingests: tokio::sync::Semaphore::new(limits.max_concurrent_ingests.max(1)),
        metrics: Metrics::default(),
        limits: limits.clone(),
    });
    Router::new()
        .route("/push.v1.PusherService/Push", post(routes::push::push))
        .route("/ingest", post(routes::ingest::ingest))
        .route("/api/v1/profile-types", get(routes::labels::profile_types))
        .route("/pyroscope/label-names", get(routes::labels::label_names))
        .route("/pyroscope/label-values", get(routes::labels::label_values))
        .route("/pyroscope/render", get(routes::render::render))
        .route("/pyroscope/render-diff", get(routes::render::render_diff))
        .route("/api/v1/group-totals", get(routes::render::group_totals))
        .route("/api/v1/export", get(routes::export::export))
        .route(
            "/querier.v1.QuerierService/ProfileTypes",
            post(routes::querier::profile_types),
        )
        .route(
            "/querier.v1.QuerierService/LabelNames",
            post(routes::querier::label_names),
        )
        .route(
            "/querier.v1.QuerierService/LabelValues",
            post(routes::querier::label_values),
        )
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(get(ui_assets::serve))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_access,
        ))
        .with_state(state)
}

/// Applies [`Access`] to every route, counting each refusal by its reason.
async fn check_access(
    State(st): State<routes::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match st.access.refusal(&req) {
        None => next.run(req).await,
        Some(refusal) => {
            st.metrics.reject(refusal.reason);
            refusal.response
        }
    }
}

async fn metrics_handler(State(st): State<routes::AppState>) -> impl IntoResponse {
    let store = st.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats())
        .await
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, kiln_proto::exposition::CONTENT_TYPE)],
        st.metrics.render(&stats),
    )
}

/// Opens the store, serves on `args.listen` until `shutdown`, then closes the store.
pub async fn serve(
    args: ServerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let access = args.access()?;
    let open_args = args.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || open_store(&open_args))
            .await
            .context("opening the profile store")??,
    );
    let r = match tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))
    {
        Ok(l) => {
            serve_listener_with_access(store.clone(), l, args.limits(), access, shutdown).await
        }
        Err(e) => Err(e),
    };
    let closed = store.close().context("closing the profile store");
    r.and(closed)
}

/// Serves HTTP on an already open store, with no token and the loopback `Host` check
/// when `listen` is loopback. Does not close the store.
pub async fn serve_store(
    store: Arc<Store>,
    listen: SocketAddr,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    serve_listener(store, listener, limits, shutdown).await
}

/// Serves on a bound listener (tests bind `127.0.0.1:0` and read the port first), with
/// no token and the loopback `Host` check when the listener is on loopback.
pub async fn serve_listener(
    store: Arc<Store>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let access = Access::for_listen(listener.local_addr()?);
    serve_listener_with_access(store, listener, limits, access, shutdown).await
}

/// Serves on a bound listener behind `access` (see [`ServerArgs::access`]). Runs store
/// maintenance (rollups, retention) every 30 s while serving.
pub async fn serve_listener_with_access(
    store: Arc<Store>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    access: Access,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    log::info!("kiln-server: listening on http://{addr}");
    eprintln!("kiln: serving the UI and API on http://{addr}");
    let maint_store = store.clone();
    let maintenance = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let s = maint_store.clone();
            match tokio::task::spawn_blocking(move || s.maintain(kiln_store::now_nanos())).await {
                Ok(Ok(_)) => {}
                Ok(Err(kiln_store::StoreError::Closed)) => break,
                Ok(Err(e)) => log::warn!("kiln-server: maintenance: {}", error::chain(&e)),
                Err(e) => log::warn!("kiln-server: maintenance task: {e}"),
            }
        }
    });
    if access.token.is_some() {
        log::info!("kiln-server: every request but /healthz needs the token");
    }
    let app = router_with_access(store, limits, access);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
    maintenance.abort();
    let _ = maintenance.await;
    log::info!("kiln-server: stopped");
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn flags_parse_with_defaults_and_units() {
        let cli = Cli::try_parse_from(["kiln"]).unwrap();
        assert_eq!(cli.server.listen.to_string(), "127.0.0.1:4040");
        assert_eq!(cli.server.max_body_bytes, 4 << 20);
        assert_eq!(cli.server.max_nodes, 8192);
        assert_eq!(cli.server.max_stack_depth, 1000);
        let cli = Cli::try_parse_from([
            "kiln",
            "--listen",
            "0.0.0.0:9000",
            "--retention-age",
            "7d",
            "--retention-size",
            "10GiB",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        let o = cli.server.store_options();
        assert_eq!(o.retention_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(o.retention_bytes, Some(10 << 30));
        assert_eq!(cli.server.data_dir(), PathBuf::from("/tmp/x"));
        assert!(Cli::try_parse_from(["kiln", "--retention-age", "soon"]).is_err());
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--listen",
            "--data-dir",
            "--retention-age",
            "--retention-size",
            "--max-body-bytes",
            "--max-profile-bytes",
            "--max-request-memory",
            "--max-request-samples",
            "--max-concurrent-ingests",
            "--max-stack-depth",
            "--max-nodes",
            "--auth-token-file",
            "--insecure-no-auth",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn non_loopback_needs_a_token_or_insecure_no_auth() {
        let dir = tempfile::tempdir().unwrap();
        let args = |extra: &[&str]| {
            let mut v = vec!["kiln"];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).unwrap().server
        };
        let a = args(&[]).access().unwrap();
        assert!(a.token.is_none() && a.loopback_hosts_only);
        let e = args(&["--listen", "0.0.0.0:4040"]).access().unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("without authentication") && msg.contains("--auth-token-file"),
            "{msg}"
        );
        let a = args(&["--listen", "0.0.0.0:4040", "--insecure-no-auth"])
            .access()
            .unwrap();
        assert!(a.token.is_none() && !a.loopback_hosts_only);
        let f = dir.path().join("token");
        std::fs::write(&f, "tok3n\n").unwrap();
        let a = args(&[
            "--listen",
            "[::]:4040",
            "--auth-token-file",
            f.to_str().unwrap(),
        ])
        .access()
        .unwrap();
        assert!(a.token.is_some());
        std::fs::write(&f, "\n").unwrap();
        let e = args(&["--auth-token-file", f.to_str().unwrap()])
            .access()
            .unwrap_err();
        assert!(format!("{e:#}").contains("is empty"), "{e:#}");
        // The token never appears in debug output.
        std::fs::write(&f, "tok3n").unwrap();
        let a = args(&["--auth-token-file", f.to_str().unwrap()])
            .access()
            .unwrap();
        assert!(!format!("{a:?}").contains("tok3n"));
    }

    #[test]
    fn data_dir_default() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(default_data_dir(), PathBuf::from("/var/lib/kiln"));
        } else {
            assert!(default_data_dir().ends_with("kiln"));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serve_opens_serves_and_closes_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = ServerArgs {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            data_dir: Some(dir.path().to_owned()),
            ..ServerArgs::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(args, async {
            let _ = rx.await;
        }));
        let ok = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            for _ in 0..100 {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    let mut buf = String::new();
                    s.read_to_string(&mut buf).unwrap();
                    return buf.starts_with("HTTP/1.1 200");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
        .await
        .unwrap();
        assert!(ok, "server did not answer /healthz");
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        // Closed cleanly: the database opens again at once.
        Store::open(dir.path(), StoreOptions::default()).unwrap();
    }
}
