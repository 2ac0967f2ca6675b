//! `/api/v1/tasks/{id}/logs`: a task's output, whole or followed as Server-Sent Events.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::Json;
use cloudai_proto::pb;
use cloudai_proto::pb::client_service_server::ClientService;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::Status;

use super::{code_name, request, Api, ApiError, ApiResult, ErrorBody};
use crate::auth::Action;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogQuery {
    /// Server-Sent Events until the task ends.
    #[serde(default)]
    follow: bool,
    /// Only this attempt's output (1 is the first); default the deciding one.
    attempt: Option<u32>,
    /// `stdout` or `stderr`; both when absent.
    stream: Option<String>,
}

fn chunk_json(c: pb::LogChunk) -> Value {
    let stream = match pb::LogStream::try_from(c.stream) {
        Ok(pb::LogStream::Stderr) => "stderr",
        Ok(pb::LogStream::System) => "system",
        _ => "stdout",
    };
    let time = super::time_json(c.time);
    json!({
        "seq": c.seq,
        "attempt": c.attempt,
        "stream": stream,
        "time": time,
        "text": String::from_utf8_lossy(&c.data),
    })
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}/logs", tag = "tasks", params(("id" = String, Path, description = "A task id, or an unambiguous prefix of one"), LogQuery), responses((status = 200, description = "`{\"lines\": [...]}`; with follow=true, Server-Sent Events (`event: log`, then `event: end`)"), (status = "4XX", description = "Refused; `error.code` is the gRPC code's name", body = ErrorBody), (status = "5XX", description = "The store or the master failed", body = ErrorBody)))]
pub(super) async fn logs(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    let (stdout, stderr) = match q.stream.as_deref() {
        None | Some("") => (true, true),
        Some("stdout") => (true, false),
        Some("stderr") => (false, true),
        Some(other) => {
            return Err(ApiError(Status::invalid_argument(format!(
                "unknown stream {other:?}; stdout or stderr"
            ))))
        }
    };
    let msg = pb::StreamLogsRequest {
        id,
        follow: q.follow,
        after_seq: None,
        stdout,
        stderr,
        attempt: q.attempt,
    };
    let req = request(&api, &headers, peer, Action::Read, msg).await?;
    let chunks = api.svc.stream_logs(req).await?.into_inner();
    if !q.follow {
        let all: Vec<Result<pb::LogChunk, Status>> = chunks.collect().await;
        let lines = all
            .into_iter()
            .map(|c| c.map(chunk_json))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Json(json!({ "chunks": lines })).into_response());
    }
    Ok(Sse::new(events(chunks))
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}

/// Each chunk as an `event: log`, then `event: end` (or `event: error`) when it stops.
fn events(
    chunks: impl Stream<Item = Result<pb::LogChunk, Status>> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let ended = futures::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("end").data("{}"))
    });
    chunks
        .map(|c| {
            Ok(match c {
                Ok(c) => Event::default()
                    .event("log")
                    .data(chunk_json(c).to_string()),
                Err(s) => Event::default().event("error").data(
                    json!({ "code": code_name(s.code()), "message": s.message() }).to_string(),
                ),
            })
        })
        .chain(ended)
}
