//! The master's HTTP listener (`--http-listen`, default 127.0.0.1:8080): `/metrics` in
//! the Prometheus (OpenMetrics) text format, the JSON API (`api`, `/api/v1`) and the web
//! dashboard (`dashboard`, `/`; its pages hold no data and call the API). The same auth
//! rules as the gRPC port: with auth required, a scrape needs an API token (any role;
//! Prometheus sends it with `authorization: { credentials: ... }`), and a master without
//! auth (local-dev mode) serves HTTP on loopback only.
//!
//! The default address is taken only if free: a second master on one host says so and
//! serves no HTTP. An address given with `--http-listen` must be free; `off` turns the
//! listener off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::auth::{is_loopback, Auth, AuthMode};
use crate::leadership::Role;
use crate::metrics::ScrapeView;
use crate::shared::Shared;

/// The default HTTP address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// What Prometheus's encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the HTTP listener goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpListen {
    /// 127.0.0.1:8080 if it is free, else none (said in the log).
    Default,
    /// No HTTP listener.
    Off,
    /// This address, which must be free.
    At(SocketAddr),
}

/// Parses `--http-listen`: `off`, or `HOST:PORT`.
pub fn parse_http_listen(s: &str) -> Result<HttpListen, String> {
    match s.trim() {
        "off" | "none" => Ok(HttpListen::Off),
        "default" => Ok(HttpListen::Default),
        a => a.parse().map(HttpListen::At).map_err(|e| {
            format!("invalid --http-listen {a:?}: {e} (expected HOST:PORT, e.g. 127.0.0.1:8080, or off)")
        }),
    }
}

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    auth: Arc<Auth>,
}

/// Binds and serves the HTTP listener until `stop` turns true; returns the address it
/// serves on (`None` when off or the default was taken). A non-loopback address on a
/// master without auth is refused: it would publish what only the operator may see.
pub async fn start(
    shared: Arc<Shared>,
    auth: Arc<Auth>,
    svc: Arc<crate::client_service::ClientSvc>,
    admin: Arc<crate::admin_service::AdminSvc>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, std::io::Error> {
    let (addr, required) = match shared.config.http_listen {
        HttpListen::Off => return Ok(None),
        HttpListen::Default => (DEFAULT_HTTP_LISTEN.parse().expect("valid default"), false),
        HttpListen::At(a) => (a, true),
    };
    if auth.mode() == AuthMode::LocalDev && !is_loopback(addr.ip()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "--http-listen {addr} is not loopback, but this master runs without auth \
                 (local-dev mode: its gRPC port is on loopback); serve HTTP on loopback, or \
                 listen on a non-loopback gRPC address (auth required) or pass --require-auth"
            ),
        ));
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if !required => {
            tracing::warn!(addr = %addr, error = %e,
                "no HTTP (metrics): the default address is taken; pass --http-listen HOST:PORT");
            return Ok(None);
        }
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot listen on --http-listen {addr}: {e}"),
            ))
        }
    };
    let local = listener.local_addr()?;
    let api = crate::api::routes(crate::api::Api {
        svc,
        admin,
        auth: auth.clone(),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(App { shared, auth })
        .merge(api)
        .merge(crate::dashboard::routes());
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the HTTP listener failed");
        }
    });
    tracing::info!(addr = %local, "dashboard at http://{local}/ (JSON API under /api/v1, metrics at /metrics)");
    Ok(Some(local))
}

async fn metrics(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if app.auth.mode().enforced() {
        if let Err(s) = app.auth.authenticate(&headers, Some(peer)).await {
            let code = match s.code() {
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            if code == StatusCode::UNAUTHORIZED {
                let label = crate::metrics::ReasonLabel {
                    reason: "unauthenticated".into(),
                };
                app.shared.metrics.auth_refusals.get_or_create(&label).inc();
                tracing::warn!(peer = %peer, path = "/metrics", reason = %s.message(), "request refused");
            }
            return (code, format!("{}\n", s.message())).into_response();
        }
    }
    let shared = &app.shared;
    let now = chrono::Utc::now();
    let stats = tokio::time::timeout(shared.config.store_timeout, shared.store.stats(now))
        .await
        .ok()
        .and_then(Result::ok);
    let epoch = match shared.role() {
        Role::Leader { epoch, .. } => Some(epoch),
        _ => None,
    };
    let (workers, seen) = {
        let c = shared.cluster();
        let at = tokio::time::Instant::now();
        let workers: Vec<_> = c.workers().cloned().collect();
        let seen: HashMap<String, f64> = workers
            .iter()
            .map(|w| (w.record.id.clone(), (at - w.last_seen).as_secs_f64()))
            .collect();
        (workers, seen)
    };
    let commands = shared.store.commands_sent();
    let text = shared.metrics.render(&ScrapeView {
        stats: stats.as_ref(),
        epoch,
        workers: &workers,
        seen: &seen,
        now,
        commands: &commands,
    });
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}
