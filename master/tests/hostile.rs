//! Hostile and broken input over real gRPC never crashes or stalls the master: oversized
//! messages, bodies that are not protobuf, the fuzz corpus of `cloudai-proto` sent as raw
//! request bodies and worker-stream frames, bytes that are not HTTP/2, and idle
//! connections that never speak. After each, the master still answers at once and still
//! dispatches work.

// Handlers and clients return `tonic::Status` by value, as tonic does.
#![allow(clippy::result_large_err)]

mod common;

use std::path::Path;
use std::time::Duration;

use cloudai_proto::pb::{self, master_message::Msg};
use common::*;
use prost::bytes::{Buf, BufMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

/// A codec that sends and receives message bodies as raw bytes, so a test can put
/// anything on the wire inside valid gRPC framing.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

async fn raw_unary(
    m: &Master,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(m.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .map(|r| r.into_inner())
}

/// Opens a worker stream whose frames are raw bytes; returns the call's result.
async fn raw_stream(m: &Master, frames: Vec<Vec<u8>>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(m.channel().await);
    grpc.ready().await.unwrap();
    let resp = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(frames)),
            PathAndQuery::from_static("/cloudai.v1.WorkerService/Connect"),
            Raw,
        )
        .await?;
    let mut s = resp.into_inner();
    // Read what the master says until it ends the stream (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = s.message().await {}
    })
    .await;
    Ok(())
}

/// The master answers a normal call within a second.
async fn assert_responsive(m: &Master) {
    let mut c = m.client().await;
    tokio::time::timeout(
        Duration::from_secs(1),
        c.queue_stats(pb::QueueStatsRequest {}),
    )
    .await
    .expect("the master answers within 1s")
    .expect("queue stats ok");
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is readable: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "the corpus has its seeds");
    out
}

#[tokio::test]
async fn oversized_messages_are_refused_and_the_master_carries_on() {
    let config = cloudai_master::MasterConfig {
        max_message_bytes: 64 * 1024,
        ..test_config()
    };
    let m = Master::start_with(config).await;
    let mut c = m.client().await.max_encoding_message_size(8 << 20);
    let mut big = spec("cloudai/busybox:test");
    big.command = vec!["x".repeat(200 * 1024)];
    let err = c
        .enqueue(pb::EnqueueRequest {
            spec: Some(big),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    // The same on a worker stream: a huge Register ends that stream, nothing else.
    let mut huge = register("w-huge", res(1000, 1024), vec![]);
    if let Some(pb::worker_message::Msg::Register(r)) = huge.msg.as_mut() {
        r.hostname = "h".repeat(200 * 1024);
    }
    let mut w = WorkerServiceClient::new(m.channel().await).max_encoding_message_size(8 << 20);
    match w.connect(tokio_stream::iter(vec![huge])).await {
        Ok(_) => panic!("a Register over the size limit was accepted"),
        Err(e) => assert_ne!(e.code(), Code::Ok, "{e:?}"),
    }
    assert_responsive(&m).await;

    // Mid-stream: an oversized event ends that worker's stream; it reconnects and works.
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let first_hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    w.event(&id, a.token, log(&"y".repeat(200 * 1024))).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match w.rx.message().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the master ends a stream that sent an oversized message"
    );
    first_hb.abort();
    let mut w = RawWorker::reconnect(&m, "w1", res(1000, 1024), vec![aref(&id, a.token)]).await;
    let _hb = w.keep_alive();
    w.event(&id, a.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));
    let t = wait_status(&mut c, &id, pb::TaskStatus::Succeeded, 5).await;
    assert_eq!(
        logs(&mut c, &id, false).await,
        "",
        "the oversized chunk was not kept"
    );
    assert_eq!(t.attempts.len(), 1);
    m.stop().await.unwrap();
}

fn aref(task_id: &str, token: u64) -> pb::AttemptRef {
    pb::AttemptRef {
        task_id: task_id.into(),
        token,
        devices: Vec::new(),
    }
}

#[tokio::test]
async fn bodies_that_are_not_protobuf_are_errors_not_crashes() {
    let m = Master::start().await;
    for (name, bytes) in corpus() {
        for path in [
            "/cloudai.v1.ClientService/Enqueue",
            "/cloudai.v1.ClientService/EnqueueBatch",
            "/cloudai.v1.ClientService/ListTasks",
            "/cloudai.v1.AgentService/SubmitAssignments",
        ] {
            // Whatever the body decodes to (or not), the answer is a status or a reply.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), raw_unary(&m, path, bytes.clone()))
                    .await
                    .unwrap_or_else(|_| panic!("{path} with {name} answered within 2s"));
        }
        tokio::time::timeout(
            Duration::from_secs(5),
            raw_stream(&m, vec![bytes.clone(), bytes.clone()]),
        )
        .await
        .unwrap_or_else(|_| panic!("worker stream with {name} ended within 5s"))
        .ok();
    }
    let err = raw_unary(&m, "/cloudai.v1.ClientService/Enqueue", vec![0xff; 32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_responsive(&m).await;

    // And it still does its job.
    let mut c = m.client().await;
    let mut w = RawWorker::connect(&m, "w1", res(1000, 1024)).await;
    let _hb = w.keep_alive();
    let id = enqueue(&mut c, spec("cloudai/busybox:test")).await;
    let a = w.next_assign().await;
    assert_eq!(a.task_id, id);
    w.event(&id, a.token, exited(0)).await;
    assert!(matches!(w.next().await, Msg::Ack(_)));
    m.stop().await.unwrap();
}

#[tokio::test]
async fn garbage_and_idle_connections_neither_crash_nor_stall_the_master() {
    let m = Master::start().await;
    // Connections that never say anything.
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(m.addr).await.unwrap());
    }
    // Connections that say something that is not HTTP/2: the master hangs up.
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0u8; 4096],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
    ] {
        let mut s = TcpStream::connect(m.addr).await.unwrap();
        let _ = s.write_all(&junk).await;
        let mut buf = vec![0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the master closes a connection speaking garbage"
        );
    }
    assert_responsive(&m).await;
    drop(idle);
    m.stop().await.unwrap();
}
