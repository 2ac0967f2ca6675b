//! ClientService over real gRPC on loopback with a real SQLite file.

mod common;

use cloudai_proto::pb;
use common::*;
use tonic::Code;

#[tokio::test]
async fn enqueue_get_list_stats_round_trip() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut s = spec("cloudai/busybox:test");
    s.command = vec!["echo".into(), "hi".into()];
    s.priority = 5;
    let a = enqueue(&mut c, s.clone()).await;
    let b = enqueue(&mut c, spec("cloudai/busybox:test")).await;

    let t = get(&mut c, &a).await;
    assert_eq!(t.id, a);
    assert_eq!(status(&t), pb::TaskStatus::Queued);
    assert_eq!(t.spec.as_ref().unwrap().command, ["echo", "hi"]);
    assert_eq!(t.spec.as_ref().unwrap().priority, 5);

    let list = c
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = list.tasks.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, [b.clone(), a.clone()], "newest first");
    assert!(list.next_page_token.is_empty());

    // Paging: one per page, the token is the last id.
    let p1 = c
        .list_tasks(pb::ListTasksRequest {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.tasks[0].id, b);
    assert_eq!(p1.next_page_token, b);
    let p2 = c
        .list_tasks(pb::ListTasksRequest {
            limit: 1,
            page_token: p1.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.tasks[0].id, a);

    let stats = c
        .queue_stats(pb::QueueStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let queued = stats
        .counts
        .iter()
        .find(|s| s.status == pb::TaskStatus::Queued as i32)
        .unwrap();
    assert_eq!(queued.count, 2);
    assert!(stats.oldest_queued_at.is_some());

    // Filter by status.
    let none = c
        .list_tasks(pb::ListTasksRequest {
            statuses: vec![pb::TaskStatus::Running as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.tasks.is_empty());
    m.stop().await.unwrap();
}

#[tokio::test]
async fn prefixes_resolve_or_fail_clearly() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let t = get(&mut c, &id[..13]).await;
    assert_eq!(t.id, id);

    let err = c
        .get_task(pb::GetTaskRequest {
            id: "ffffffff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // UUID v7 ids made in the same millisecond share their first 8 hex digits... make
    // several and use the shared first character, which every id has in common.
    let other = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let common_prefix: String = id
        .chars()
        .zip(other.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    assert!(!common_prefix.is_empty());
    let err = c
        .get_task(pb::GetTaskRequest { id: common_prefix })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let err = c
        .cancel_task(pb::CancelTaskRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_specs_and_unknown_pins_are_rejected() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(spec("Not A Valid Image")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("image"), "{}", err.message());

    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let mut pinned = spec("cloudai/busybox:test");
    pinned.pinned_worker = Some("nobody".into());
    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(pinned.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("unknown worker"),
        "{}",
        err.message()
    );

    // Batch is all-or-nothing: one bad pin rejects all.
    let err = c
        .enqueue_batch(pb::EnqueueBatchRequest {
            specs: vec![spec("cloudai/busybox:test"), pinned],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let all = c
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.tasks.is_empty());

    let ok = c
        .enqueue_batch(pb::EnqueueBatchRequest {
            specs: vec![spec("cloudai/busybox:test"), spec("cloudai/busybox:test")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), 2);
    assert!(ok.results.iter().all(|r| r.created));

    let err = c
        .list_tasks(pb::ListTasksRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn idempotency_key_returns_the_first_task() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let mut s = spec("cloudai/busybox:test");
    s.idempotency_key = Some("k1".into());
    let first = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(s.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let again = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(s.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.created && !again.created);
    assert_eq!(first.task_id, again.task_id);
    s.priority = 9;
    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(s),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_queued_then_cancel_terminal_fails() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let t = c
        .cancel_task(pb::CancelTaskRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(status(&t), pb::TaskStatus::Cancelled);
    let err = c
        .cancel_task(pb::CancelTaskRequest { id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let m = Master::start().await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(m.channel().await);
    for svc in [
        "",
        "cloudai.v1.WorkerService",
        "cloudai.v1.ClientService",
        "cloudai.v1.AgentService",
    ] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: svc.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{svc}"
        );
    }
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut r = ServerReflectionClient::new(m.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = r
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "cloudai.v1.ClientService",
        "cloudai.v1.WorkerService",
        "cloudai.v1.AgentService",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    m.stop().await.unwrap();
}

#[tokio::test]
async fn stream_logs_of_unknown_task_is_not_found() {
    let m = Master::start().await;
    let mut c = m.client().await;
    let err = c
        .stream_logs(pb::StreamLogsRequest {
            id: "0123abcd".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    m.stop().await.unwrap();
}
