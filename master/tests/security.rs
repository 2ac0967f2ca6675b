//! Auth over real gRPC on loopback with a real SQLite store, `--require-auth`: the codes
//! clients and workers get (UNAUTHENTICATED, PERMISSION_DENIED), the join token on
//! Register, `submitted_by`, cancel ownership, and public health checks.

mod common;

use std::sync::Arc;

use cloudai_master::auth::setup::add_user;
use cloudai_master::auth::{SecurityConfig, ServerSecret};
use cloudai_proto::pb;
use cloudai_queue::Role;
use common::*;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type Authed = ClientServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

async fn as_user(m: &Master, token: Option<&str>) -> Authed {
    ClientServiceClient::with_interceptor(m.channel().await, Bearer(token.map(String::from)))
}

async fn enqueue_as(c: &mut Authed) -> Result<String, tonic::Status> {
    c.enqueue(pb::EnqueueRequest {
        spec: Some(spec("cloudai/busybox:test")),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().task_id)
}

#[tokio::test]
async fn codes_roles_ownership_and_the_join_token() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let secret_file = dir.path().join("cloudai.secret");
    let mut config = test_config();
    config.security = SecurityConfig {
        require_auth: true,
        secret_file: secret_file.clone(),
        ..SecurityConfig::default()
    };
    let master = Master::start_in(dir.clone(), config).await;
    let (secret, _) = ServerSecret::load_or_create(&secret_file).unwrap();
    let store = master.store.as_ref();
    let admin = add_user(store, &secret, "ada", Role::Admin).await.unwrap();
    let sub = add_user(store, &secret, "sam", Role::Submitter)
        .await
        .unwrap();
    let other = add_user(store, &secret, "ola", Role::Submitter)
        .await
        .unwrap();
    let viewer = add_user(store, &secret, "vic", Role::Viewer).await.unwrap();

    let e = eventually("the master to refuse an anonymous call", 10, || async {
        enqueue_as(&mut as_user(&master, None).await).await.err()
    })
    .await;
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = enqueue_as(&mut as_user(&master, Some("cai_bogus")).await)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = enqueue_as(&mut as_user(&master, Some(&viewer)).await)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("needs role submitter"),
        "{}",
        e.message()
    );

    let mut sam = as_user(&master, Some(&sub)).await;
    let id = enqueue_as(&mut sam).await.unwrap();
    let task = master.store.get(id.parse().unwrap()).await.unwrap();
    assert_eq!(task.submitted_by.as_deref(), Some("sam"));

    let cancel = |c: &mut Authed, id: &str| {
        let mut c = c.clone();
        let id = id.to_string();
        async move { c.cancel_task(pb::CancelTaskRequest { id }).await }
    };
    let e = cancel(&mut as_user(&master, Some(&other)).await, &id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("submitted by sam"), "{}", e.message());
    cancel(&mut sam, &id).await.unwrap();
    let id2 = enqueue_as(&mut sam).await.unwrap();
    cancel(&mut as_user(&master, Some(&admin)).await, &id2)
        .await
        .unwrap();
    as_user(&master, Some(&viewer))
        .await
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap();

    // Agent API: admin only.
    let mut agent = pb::agent_service_client::AgentServiceClient::with_interceptor(
        master.channel().await,
        Bearer(Some(sub.clone())),
    );
    let e = agent
        .fetch_cluster_state(pb::FetchClusterStateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Health checking stays public.
    let mut health = tonic_health::pb::health_client::HealthClient::new(master.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    // Workers: the join token created at start is the only one that registers.
    let mut wrong = register("w-wrong", res(1000, 512), vec![]);
    if let Some(pb::worker_message::Msg::Register(r)) = wrong.msg.as_mut() {
        r.token = "caj_wrong".into();
    }
    let e = match RawWorker::open(&master, wrong).await {
        Err(e) => e,
        Ok(mut w) => w.rx.message().await.unwrap_err(),
    };
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(master.store.get_worker("w-wrong").await.unwrap().is_none());

    let (join, _) =
        cloudai_master::auth::setup::rotate_join_token(store, &secret, std::time::Duration::ZERO)
            .await
            .unwrap();
    let mut right = register("w-right", res(1000, 512), vec![]);
    if let Some(pb::worker_message::Msg::Register(r)) = right.msg.as_mut() {
        r.token = join;
    }
    let mut w = RawWorker::open(&master, right).await.unwrap();
    match w.next().await {
        pb::master_message::Msg::Registered(r) => assert_eq!(r.worker_id, "w-right"),
        other => panic!("expected Registered, got {other:?}"),
    }
}
