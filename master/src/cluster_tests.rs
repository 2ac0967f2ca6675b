use super::*;
use crate::conn::Outbound;
use crate::placement::devices::Device;
use cloudai_queue::{Attempt, TaskSpec, TaskStatus};
use tokio::sync::mpsc;

const HB: Duration = Duration::from_millis(100);

fn record(id: &str, cpu: u64) -> WorkerRecord {
    WorkerRecord {
        id: id.into(),
        labels: Default::default(),
        capacity: Resources {
            cpu_millis: cpu,
            memory_bytes: 1 << 30,
            gpus: 0,
            disk_bytes: 0,
        },
        gpu_model: None,
        hostname: id.into(),
        health: WorkerHealth::Healthy,
        registered_at: Utc::now(),
        last_heartbeat: Utc::now(),
        cordoned: false,
        drain_deadline: None,
        attributes: Default::default(),
    }
}

fn conn(id: u64) -> (Conn, mpsc::UnboundedReceiver<Outbound>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Conn { id, tx }, rx)
}

fn cpu(c: u64) -> TaskAsk<'static> {
    TaskAsk::sized(Resources {
        cpu_millis: c,
        ..Default::default()
    })
}

fn connected(ids: &[(&str, u64)], now: Instant) -> Cluster {
    let mut c = Cluster::new();
    for (i, (id, cap)) in ids.iter().enumerate() {
        let (k, _rx) = conn(i as u64);
        c.connect(record(id, *cap), "v".into(), k, now).unwrap();
    }
    c
}

#[test]
fn each_submitters_share_follows_its_reservations() {
    let now = Instant::now();
    let mut c = connected(&[("w", 4000)], now);
    let (a1, a2, b) = (TaskId::new(), TaskId::new(), TaskId::new());
    c.try_reserve_for(a1, "w", &cpu(1000), Some("ana")).unwrap();
    c.try_reserve_for(a2, "w", &cpu(500), Some("ana")).unwrap();
    c.restore_reservation(b, "w", cpu(700).request, 3, Some("ben"));
    // A refused reservation counts for no one.
    assert!(c
        .try_reserve_for(TaskId::new(), "w", &cpu(4000), Some("ana"))
        .is_err());
    assert_eq!(c.shares().of(Some("ana")).running, 2);
    assert_eq!(c.shares().of(Some("ana")).reserved.cpu_millis, 1500);
    assert_eq!(c.shares().of(Some("ben")).reserved.cpu_millis, 700);
    // Restored twice (a reconnect after the start's restore): counted once.
    c.restore_reservation(b, "w", cpu(700).request, 3, Some("ben"));
    assert_eq!(c.shares().of(Some("ben")).running, 1);
    assert!(c.release(a1, None));
    assert!(!c.release(a1, None), "released once");
    assert!(c.release(b, Some(3)));
    assert_eq!(c.shares().of(Some("ana")).reserved.cpu_millis, 500);
    assert_eq!(c.shares().of(Some("ben")), Default::default());
    assert!(c.release(a2, None));
    assert_eq!(c.shares(), &Shares::default());
}

#[test]
fn reservations_reduce_free_and_are_released_exactly_once() {
    let now = Instant::now();
    let mut c = connected(&[("w", 1000)], now);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(600)).unwrap();
    assert_eq!(c.worker("w").unwrap().free().cpu_millis, 400);
    // A second task does not fit in what is left.
    assert!(matches!(
        c.try_reserve(TaskId::new(), "w", &cpu(600)),
        Err(Reject::DoesNotFit { .. })
    ));
    // The same task cannot be reserved twice, and the refusal says why.
    assert_eq!(c.try_reserve(t, "w", &cpu(1)), Err(Reject::AlreadyPlaced));
    assert!(matches!(
        c.confirm(t, 7),
        Confirmed::Send { cancel: false, .. }
    ));
    assert!(!c.release(t, Some(6)), "wrong token releases nothing");
    assert!(
        !c.release(t, None),
        "a confirmed reservation is not pending"
    );
    assert!(c.release(t, Some(7)));
    assert!(!c.release(t, Some(7)), "second release is a no-op");
    assert_eq!(c.worker("w").unwrap().free().cpu_millis, 1000);
    assert!(c.worker("w").unwrap().tasks.is_empty());
}

#[test]
fn a_failed_assign_releases_the_pending_reservation() {
    let now = Instant::now();
    let mut c = connected(&[("w", 1000)], now);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(1000)).unwrap();
    assert!(c.release(t, None));
    assert_eq!(c.worker("w").unwrap().reserved, Resources::default());
}

#[test]
fn health_goes_suspect_then_dead_and_releases_attempts() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000), ("v", 1000)], t0);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(500)).unwrap();
    c.confirm(t, 3);
    let pending = TaskId::new();
    c.try_reserve(pending, "w", &cpu(100)).unwrap();

    assert!(c.tick(t0 + HB / 2, HB, 3).is_empty());
    // "v" keeps heartbeating; "w" falls silent.
    assert_eq!(
        c.heartbeat("v", 1, Usage::default(), t0 + HB, Utc::now()),
        Beat::Accepted { revived: false }
    );
    let ch = c.tick(t0 + HB, HB, 3);
    assert_eq!(ch.len(), 1);
    assert_eq!(
        (ch[0].worker_id.as_str(), ch[0].health),
        ("w", WorkerHealth::Suspect)
    );
    assert!(!c.worker("w").unwrap().schedulable());
    assert!(c
        .tick(t0 + HB * 2, HB, 3)
        .iter()
        .all(|h| h.worker_id != "w"));

    let ch: Vec<_> = c
        .tick(t0 + HB * 3, HB, 3)
        .into_iter()
        .filter(|h| h.worker_id == "w")
        .collect();
    assert_eq!(ch[0].health, WorkerHealth::Dead);
    assert_eq!(
        ch[0].lost,
        vec![(t, 3)],
        "only the confirmed attempt is lost here"
    );
    assert!(c.worker("w").unwrap().conn.is_none());
    assert!(
        c.reservation(&t).is_some(),
        "kept until the store has the attempt lost"
    );
    assert!(c.release_over(t, 3));
    // The pending one is the dispatcher's: confirm tells it the worker is gone.
    assert!(matches!(c.confirm(pending, 9), Confirmed::WorkerGone));
    assert!(c.release(pending, Some(9)));
    assert_eq!(c.worker("w").unwrap().reserved, Resources::default());
    // Dead is reported once.
    assert!(c
        .tick(t0 + HB * 10, HB, 3)
        .iter()
        .all(|h| h.worker_id != "w"));
}

#[test]
fn a_heartbeat_revives_a_suspect_worker() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    c.tick(t0 + HB, HB, 3);
    assert_eq!(c.worker("w").unwrap().record.health, WorkerHealth::Suspect);
    assert_eq!(
        c.heartbeat("w", 0, Usage::default(), t0 + HB, Utc::now()),
        Beat::Accepted { revived: true }
    );
    assert!(c.worker("w").unwrap().schedulable());
    // A heartbeat on an old stream id counts for nothing and is not acknowledged.
    assert_eq!(
        c.heartbeat("w", 42, Usage::default(), t0 + HB, Utc::now()),
        Beat::Ignored
    );
    c.set_reconciling("w", true);
    assert!(
        !c.worker("w").unwrap().schedulable(),
        "no work while reconciling"
    );
}

#[test]
fn a_second_live_stream_is_refused_unless_the_first_is_suspect() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    let (k, _rx) = conn(5);
    assert!(c
        .connect(record("w", 1000), "v".into(), k.clone(), t0)
        .is_err());
    c.tick(t0 + HB, HB, 3);
    let old = c
        .connect(record("w", 1000), "v".into(), k, t0 + HB)
        .unwrap();
    assert_eq!(old.map(|o| o.id), Some(0));
    // The old stream's disconnect does not drop the new one.
    c.disconnect("w", 0);
    assert_eq!(c.conn("w").map(|k| k.id), Some(5));
    c.disconnect("w", 5);
    assert!(c.conn("w").is_none());
}

#[test]
fn a_disconnected_worker_gets_no_work_and_dies_on_schedule() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    c.disconnect("w", 0);
    assert!(matches!(
        c.try_reserve(TaskId::new(), "w", &cpu(1)),
        Err(Reject::Unschedulable(_))
    ));
    let ch = c.tick(t0 + HB * 3, HB, 3);
    assert_eq!(ch[0].health, WorkerHealth::Dead);
}

#[test]
fn restored_workers_wait_for_the_reconnect_window() {
    let t0 = Instant::now();
    let mut c = Cluster::new();
    c.restore_worker(record("w", 1000), t0, t0 + HB * 10);
    let t = TaskId::new();
    c.restore_reservation(t, "w", cpu(400).request, 2, None);
    c.restore_reservation(TaskId::new(), "ghost", cpu(1).request, 1, None);
    assert_eq!(c.worker("w").unwrap().free().cpu_millis, 600);
    let ch = c.tick(t0 + HB * 5, HB, 3);
    assert_eq!(
        ch[0].health,
        WorkerHealth::Suspect,
        "not dead inside the window"
    );
    let ch = c.tick(t0 + HB * 10, HB, 3);
    assert_eq!(
        (ch[0].health, ch[0].lost.clone()),
        (WorkerHealth::Dead, vec![(t, 2)])
    );
}

#[test]
fn a_reconnect_inside_the_window_keeps_reservations() {
    let t0 = Instant::now();
    let mut c = Cluster::new();
    c.restore_worker(record("w", 1000), t0, t0 + HB * 10);
    let t = TaskId::new();
    c.restore_reservation(t, "w", cpu(400).request, 2, None);
    let (k, _rx) = conn(1);
    c.connect(record("w", 1000), "v".into(), k, t0 + HB)
        .unwrap();
    assert!(c.worker("w").unwrap().schedulable());
    assert_eq!(c.reservation(&t).unwrap().token, Some(2));
    assert_eq!(c.worker("w").unwrap().free().cpu_millis, 600);
}

#[test]
fn a_cancel_before_confirm_is_delivered_by_confirm() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(1)).unwrap();
    assert!(c.cancel_target(t).is_none());
    assert!(matches!(
        c.confirm(t, 1),
        Confirmed::Send { cancel: true, .. }
    ));
    assert_eq!(c.cancel_target(t).map(|(_, tok)| tok), Some(1));
    assert!(c.cancel_target(TaskId::new()).is_none());
    assert_eq!(c.pending_cancels("w"), vec![(t, 1)]);
}

#[test]
fn a_cancel_while_disconnected_is_remembered_for_the_reconnect() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(1)).unwrap();
    c.confirm(t, 2);
    assert!(c.pending_cancels("w").is_empty());
    c.disconnect("w", 0);
    assert!(c.cancel_target(t).is_none());
    assert_eq!(c.pending_cancels("w"), vec![(t, 2)]);
}

#[test]
fn slots_show_free_and_schedulable() {
    let t0 = Instant::now();
    let mut c = connected(&[("a", 1000), ("b", 2000)], t0);
    c.try_reserve(TaskId::new(), "b", &cpu(500)).unwrap();
    c.disconnect("a", 0);
    let s = c.slots();
    assert_eq!(
        s.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(!s[0].schedulable && s[1].schedulable);
    assert_eq!(s[1].free.cpu_millis, 1500);
}

#[test]
fn attempts_on_lists_the_confirmed_ones() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    let (a, b, p) = (TaskId::new(), TaskId::new(), TaskId::new());
    for t in [a, b, p] {
        c.try_reserve(t, "w", &cpu(100)).unwrap();
    }
    c.confirm(a, 1);
    c.confirm(b, 4);
    let mut got = c.attempts_on("w");
    got.sort();
    let mut want = vec![(a, 1), (b, 4)];
    want.sort();
    assert_eq!(got, want);
    assert!(c.holds(a, "w", 1) && !c.holds(a, "w", 2) && !c.holds(p, "w", 0));
    assert!(c.attempts_on("nobody").is_empty());
}

fn task_with(id: TaskId, status: TaskStatus, tokens: &[u64]) -> Task {
    let mut t = Task {
        id,
        spec: TaskSpec::new("busybox"),
        status,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        not_before: Utc::now(),
        finished_at: None,
        attempts: Vec::new(),
        cancel_requested: false,
        exit_code: None,
        error: None,
        submitted_by: None,
    };
    for (i, tok) in tokens.iter().enumerate() {
        let mut a = Attempt::new(i as u32 + 1, *tok, "w", Utc::now());
        if i + 1 < tokens.len() || !status.is_active() {
            a.outcome = Some(TaskStatus::Failed);
        }
        t.attempts.push(a);
    }
    t
}

#[test]
fn settle_releases_only_what_the_store_says_is_over() {
    let t0 = Instant::now();
    let mut c = connected(&[("w", 1000)], t0);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(300)).unwrap();
    // Pending: the store's answer to the assign decides, not a settle.
    assert!(!c.settle(&task_with(t, TaskStatus::Queued, &[])));
    c.confirm(t, 2);
    // Still live in the store: kept.
    assert!(!c.settle(&task_with(t, TaskStatus::Running, &[1, 2])));
    // A read older than the reservation (token 1 only): kept.
    assert!(!c.settle(&task_with(t, TaskStatus::Queued, &[1])));
    // The attempt ended: released, once.
    assert!(c.settle(&task_with(t, TaskStatus::Queued, &[1, 2])));
    assert!(!c.settle(&task_with(t, TaskStatus::Queued, &[1, 2])));
    assert_eq!(c.worker("w").unwrap().free().cpu_millis, 1000);
    // A newer attempt elsewhere also ends this one.
    c.try_reserve(t, "w", &cpu(300)).unwrap();
    c.confirm(t, 3);
    assert!(c.settle(&task_with(t, TaskStatus::Assigned, &[1, 2, 3, 4])));
}

#[test]
fn a_worker_stored_dead_with_live_attempts_is_declared_dead_again() {
    let t0 = Instant::now();
    let mut c = Cluster::new();
    let mut rec = record("w", 1000);
    rec.health = WorkerHealth::Dead;
    c.restore_worker(rec, t0, t0);
    let t = TaskId::new();
    c.restore_reservation(t, "w", cpu(1).request, 5, None);
    let ch = c.tick(t0 + HB * 3, HB, 3);
    assert_eq!(ch.len(), 1);
    assert_eq!(
        (ch[0].health, ch[0].lost.clone()),
        (WorkerHealth::Dead, vec![(t, 5)])
    );
}

#[test]
fn a_cordon_stops_placement_survives_a_reconnect_and_a_drain_lists_what_is_overdue() {
    let now = Instant::now();
    let mut c = connected(&[("w", 1000)], now);
    let t = TaskId::new();
    c.try_reserve(t, "w", &cpu(100)).unwrap();
    let rec = c.set_cordon("w", true, None).unwrap();
    assert!(rec.cordoned && rec.drain_deadline.is_none());
    assert!(
        !c.slots()[0].schedulable,
        "no new work on a cordoned worker"
    );
    assert!(c.set_cordon("nobody", true, None).is_none());
    // The worker reconnects with a fresh record: the cordon stays.
    c.disconnect("w", 0);
    let (k, _rx) = conn(9);
    c.connect(record("w", 1000), "v".into(), k, now).unwrap();
    assert!(c.worker("w").unwrap().record.cordoned);
    // A drain lists its attempts once the deadline passed, not before.
    let later = Utc::now() + chrono::Duration::seconds(60);
    c.set_cordon("w", true, Some(later));
    assert!(c.drain_overdue(Utc::now()).is_empty());
    assert_eq!(c.drain_overdue(later).len(), c.attempts_on("w").len());
    // Lifted: placeable again, no deadline left.
    let rec = c.set_cordon("w", false, Some(later)).unwrap();
    assert!(!rec.cordoned && rec.drain_deadline.is_none());
    assert!(c.slots()[0].schedulable);
}

fn gpu_worker(c: &mut Cluster, id: &str, n: u32, now: Instant) {
    let mut r = record(id, 8000);
    r.capacity.gpus = n;
    let (k, _rx) = conn(99);
    c.connect(r, "v".into(), k, now).unwrap();
    let devices = (0..n)
        .map(|i| Device {
            index: i,
            uuid: format!("GPU-{id}-{i}"),
            ..Device::default()
        })
        .collect();
    c.report_gpus(id, Some(devices), HashMap::new());
}

fn gpus(n: u32) -> TaskAsk<'static> {
    TaskAsk::sized(Resources {
        cpu_millis: 100,
        gpus: n,
        ..Default::default()
    })
}

fn sent_devices(c: &mut Cluster, t: TaskId, token: u64) -> Vec<String> {
    match c.confirm(t, token) {
        Confirmed::Send { devices, .. } => devices,
        Confirmed::WorkerGone => panic!("worker gone"),
    }
}

#[test]
fn gpu_tasks_get_their_own_devices_and_give_them_back() {
    let now = Instant::now();
    let mut c = Cluster::new();
    gpu_worker(&mut c, "g", 3, now);
    let (a, b, d) = (TaskId::new(), TaskId::new(), TaskId::new());
    c.try_reserve(a, "g", &gpus(1)).unwrap();
    c.try_reserve(b, "g", &gpus(2)).unwrap();
    assert_eq!(sent_devices(&mut c, a, 1), ["GPU-g-0"]);
    assert_eq!(sent_devices(&mut c, b, 2), ["GPU-g-1", "GPU-g-2"]);
    // Full by count: refused before any device is looked at.
    assert!(matches!(
        c.try_reserve(d, "g", &gpus(1)),
        Err(Reject::DoesNotFit { .. })
    ));
    assert!(c.release(b, Some(2)));
    c.try_reserve(d, "g", &gpus(2)).unwrap();
    assert_eq!(
        sent_devices(&mut c, d, 3),
        ["GPU-g-1", "GPU-g-2"],
        "b's devices, once it ended"
    );
    let holders: Vec<Option<TaskId>> = c
        .worker("g")
        .unwrap()
        .gpus
        .devices()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(holders, [Some(a), Some(d), Some(d)]);
    // A task without GPUs gets no device.
    let plain = TaskId::new();
    c.try_reserve(plain, "g", &cpu(100)).unwrap();
    assert!(sent_devices(&mut c, plain, 4).is_empty());
}

#[test]
fn a_restored_reservation_adopts_the_devices_the_worker_reports() {
    let now = Instant::now();
    let mut c = Cluster::new();
    gpu_worker(&mut c, "g", 2, now);
    // After a master restart: the store knows the attempt, the worker its device.
    let old = TaskId::new();
    let req = Resources {
        cpu_millis: 100,
        gpus: 1,
        ..Default::default()
    };
    c.report_gpus(
        "g",
        None,
        HashMap::from([(old, vec!["GPU-g-1".to_string()])]),
    );
    c.restore_reservation(old, "g", req, 5, None);
    assert_eq!(c.reservation(&old).unwrap().devices, ["GPU-g-1"]);
    let new = TaskId::new();
    c.try_reserve(new, "g", &gpus(1)).unwrap();
    assert_eq!(
        sent_devices(&mut c, new, 6),
        ["GPU-g-0"],
        "not the adopted one"
    );

    // Restored first, reported later (the next heartbeat): adopted then.
    let mut c = Cluster::new();
    gpu_worker(&mut c, "g", 2, now);
    c.restore_reservation(old, "g", req, 5, None);
    assert!(c.reservation(&old).unwrap().devices.is_empty());
    c.report_gpus(
        "g",
        None,
        HashMap::from([(old, vec!["GPU-g-0".to_string()])]),
    );
    assert_eq!(c.reservation(&old).unwrap().devices, ["GPU-g-0"]);
    c.try_reserve(new, "g", &gpus(1)).unwrap();
    assert_eq!(sent_devices(&mut c, new, 6), ["GPU-g-1"]);
}
