//! The worker's HTTP endpoint (axum): `GET /metrics`, the [`WorkerMetrics`] registry as
//! `prometheus-client` encodes it, for Prometheus to scrape. Started by [`crate::run`]
//! only when `--metrics-listen` is given; it has no authentication (the counts carry no
//! task data), so bind it to loopback or a private network.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::{WorkerMetrics, CONTENT_TYPE};

/// The routes, over `metrics`.
pub fn router(metrics: Arc<WorkerMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

/// Serves [`router`] on `listener` until `shutdown` resolves; then idle connections close
/// and it returns once the open requests are answered.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<WorkerMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape(State(metrics): State<Arc<WorkerMetrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(WorkerMetrics::default());
        let _running = metrics.attempt_running();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, async {
            let _ = stopped.await;
        }));

        let reply = get(addr, "/metrics").await;
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            body.lines()
                .any(|l| l == "cloudai_worker_running_attempts 1"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));

        let reply = get(addr, "/nope").await;
        assert!(reply.contains(" 404 "), "{reply}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "closed"
        );
    }
}
