//! GPUs, one task per device, over gRPC against a real master and SQLite file: a worker
//! names two devices at registration; GPU tasks get distinct device UUIDs in `Assign`,
//! `ListWorkers` shows who holds each, a third waits until one is given back, and after a
//! master restart the devices reported with the running attempts stay theirs.

mod common;

use std::sync::Arc;

use cloudai_proto::pb;
use common::*;

fn gpu_register(id: &str, running: Vec<pb::AttemptRef>) -> pb::WorkerMessage {
    let mut m = register(id, gpu_res(2), running);
    if let Some(pb::worker_message::Msg::Register(r)) = m.msg.as_mut() {
        r.gpu = Some(pb::GpuInfo {
            count: 2,
            model: "NVIDIA A100".into(),
            devices: ["GPU-aaaa", "GPU-bbbb"]
                .iter()
                .enumerate()
                .map(|(i, u)| pb::GpuDevice {
                    index: i as u32,
                    uuid: u.to_string(),
                    model: "NVIDIA A100".into(),
                    memory_mib: 40960,
                    task_id: String::new(),
                })
                .collect(),
        });
    }
    m
}

fn gpu_res(gpus: u32) -> pb::Resources {
    pb::Resources {
        gpus,
        ..res(4000, 4096)
    }
}

fn gpu_task() -> pb::TaskSpec {
    let mut s = spec("cloudai/busybox:test");
    s.resources = Some(pb::Resources {
        gpus: 1,
        ..res(100, 64)
    });
    s
}

async fn holders(c: &mut ClientServiceClient<tonic::transport::Channel>) -> Vec<(String, String)> {
    let w = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers
        .into_iter()
        .find(|w| w.id == "g1")
        .expect("g1 listed");
    w.gpu
        .unwrap()
        .devices
        .into_iter()
        .map(|d| (d.uuid, d.task_id))
        .collect()
}

#[tokio::test]
async fn each_gpu_task_gets_its_own_device_across_a_master_restart() {
    let config = test_config();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let m = Master::start_in(dir.clone(), config.clone()).await;
    let mut c = m.client().await;
    let mut w = RawWorker::connect_as(&m, gpu_register("g1", vec![])).await;
    let hb = w.keep_alive();

    let (a, b, third) = (
        enqueue(&mut c, gpu_task()).await,
        enqueue(&mut c, gpu_task()).await,
        enqueue(&mut c, gpu_task()).await,
    );
    let first = w.next_assign().await;
    let second = w.next_assign().await;
    assert_eq!(
        [first.devices.clone(), second.devices.clone()],
        [vec!["GPU-aaaa".to_string()], vec!["GPU-bbbb".to_string()]],
        "one device each, never the same, lowest index first"
    );
    assert_eq!(
        [first.task_id.as_str(), second.task_id.as_str()],
        [a.as_str(), b.as_str()]
    );
    let mut shown = holders(&mut c).await;
    shown.sort();
    let mut expected = vec![
        (first.devices[0].clone(), first.task_id.clone()),
        (second.devices[0].clone(), second.task_id.clone()),
    ];
    expected.sort();
    assert_eq!(shown, expected, "ListWorkers shows who holds each device");
    for x in [&first, &second] {
        w.event(&x.task_id, x.token, started()).await;
    }
    // Both devices are taken: the third waits for one.
    let t = get(&mut c, &third).await;
    assert_eq!(status(&t), pb::TaskStatus::Queued);

    // The master restarts while both run; the worker reconnects, reporting each attempt
    // with its device. The third still waits: neither device is free.
    hb.abort();
    drop(w);
    m.stop().await.unwrap();
    let m = Master::start_in(dir, config).await;
    let mut c = m.client().await;
    let running: Vec<pb::AttemptRef> = [&first, &second]
        .iter()
        .map(|x| pb::AttemptRef {
            task_id: x.task_id.clone(),
            token: x.token,
            devices: x.devices.clone(),
        })
        .collect();
    let mut w = eventually("g1 to register again", 5, || async {
        RawWorker::open(&m, gpu_register("g1", running.clone()))
            .await
            .ok()
    })
    .await;
    let _hb = w.keep_alive();
    let held = eventually("the reported devices to be held again", 5, || {
        let mut c = c.clone();
        async move {
            let h = holders(&mut c).await;
            h.iter().all(|(_, t)| !t.is_empty()).then_some(h)
        }
    })
    .await;
    assert_eq!(held.len(), 2);
    assert_eq!(
        status(&get(&mut c, &third).await),
        pb::TaskStatus::Queued,
        "no device is free"
    );

    // The second ends (it holds the higher-index device, so a master that forgot who
    // holds the lower one would give that): its device, and only it, goes to the third.
    // (seq 2: the start before the restart was 1.)
    let now = chrono::Utc::now();
    w.event_at(&second.task_id, second.token, 2, now, exited(0))
        .await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let pb::master_message::Msg::Assign(a) = w.next().await {
                return a;
            }
        }
    })
    .await
    .expect("the third task assigned once a device is free");
    assert_eq!(next.task_id, third);
    assert_eq!(
        next.devices, second.devices,
        "the freed device, not the one the first still holds"
    );
    m.stop().await.unwrap();
}
