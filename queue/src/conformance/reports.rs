//! Cases about a worker's reports ([`crate::store::AttemptLedger::report`]): a start and
//! an end stored in one write, order and repeats, late results, output kept per attempt;
//! and the queue read reduced to what placement needs ([`crate::store::TaskStore::queued_asks`]).

use chrono::{DateTime, Duration, Utc};

use super::{add, ended, lost, now, output, passed, report, spec, started, Harness};
use crate::error::QueueError;
use crate::model::{LogStream, NewLogChunk, Resources, TaskSpec, TaskStatus};
use crate::report::{AttemptEnd, LostCause, ReportBody, ReportEvent};
use crate::store::{QueuedTask, StoreOptions};

fn start_body() -> ReportBody {
    ReportBody::Started {
        container_id: "c1".into(),
    }
}

fn line(text: &str) -> ReportBody {
    ReportBody::Output {
        stream: LogStream::Stdout,
        data: text.as_bytes().to_vec(),
    }
}

fn ev(seq: u64, time: DateTime<Utc>, body: ReportBody) -> ReportEvent {
    ReportEvent { seq, time, body }
}

/// An assigned attempt reported started and exited at once is `running` then ended, in
/// one write: both of the worker's times kept; a running one keeps its start; a retry goes
/// back to the queue; a stale token or an ended task changes nothing.
pub async fn start_and_finish_in_one_write(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t0 = now();
    let (t1, t2) = (t0 + Duration::seconds(1), t0 + Duration::seconds(2));
    let both = |code| {
        vec![
            (t1, start_body()),
            (t2, ReportBody::Finished(AttemptEnd::Exited(code))),
        ]
    };

    let t = add(&*store, spec()).await;
    let a = store.assign(t.id, "w1", t0).await.unwrap();
    let done = report(&*store, t.id, a.token(), both(0))
        .await
        .unwrap()
        .task;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.finished_at, Some(t2));
    let at = &done.attempts[0];
    assert_eq!((at.started_at, at.finished_at), (Some(t1), Some(t2)));
    assert_eq!(at.outcome, Some(TaskStatus::Succeeded));
    assert_eq!(store.get(t.id).await.unwrap(), done);

    // Ended already: a new event is refused and nothing changes.
    let r = report(&*store, t.id, a.token(), both(0)).await;
    assert!(matches!(r, Err(QueueError::AttemptOver { .. })), "{r:?}");
    assert_eq!(store.get(t.id).await.unwrap(), done);

    // Running already: the first start stays.
    let r = add(&*store, spec()).await;
    let ra = store.assign(r.id, "w1", t0).await.unwrap();
    started(&*store, r.id, ra.token(), t0).await.unwrap();
    let rd = report(&*store, r.id, ra.token(), both(0))
        .await
        .unwrap()
        .task;
    assert_eq!(rd.attempts[0].started_at, Some(t0));
    assert_eq!(rd.status, TaskStatus::Succeeded);

    // A failure with attempts left: queued again, the attempt keeps its cause.
    let f = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let fa = store.assign(f.id, "w1", t0).await.unwrap();
    let fr = report(&*store, f.id, fa.token(), both(3))
        .await
        .unwrap()
        .task;
    assert_eq!(fr.status, TaskStatus::Queued);
    assert_eq!(fr.attempts[0].exit_code, Some(3));
    assert_eq!(fr.attempts[0].started_at, Some(t1));

    // A stale token: nothing changes.
    let fb = store.assign(f.id, "w2", t2).await.unwrap();
    let r = report(&*store, f.id, fa.token(), both(0)).await;
    assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");
    assert_eq!(store.get(f.id).await.unwrap(), fb);
    passed(&*store, "start_and_finish_in_one_write");
}

/// A report sent again (after a reconnect, say) changes nothing; one that resumes past what
/// is stored appends only its new tail; one that skips events is refused whole.
pub async fn reports_are_ordered_and_idempotent(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t0 = now();
    let t = add(&*store, spec()).await;
    let a = store.assign(t.id, "w1", t0).await.unwrap();
    let tok = a.token();
    let first = vec![
        ev(1, t0, start_body()),
        ev(2, t0, line("one\n")),
        ev(3, t0, line("two\n")),
    ];
    let r = store
        .report(t.id, tok, "w1", first.clone(), t0)
        .await
        .unwrap();
    assert_eq!((r.through, r.changed, r.late), (3, true, false));
    let again = store
        .report(t.id, tok, "w1", first.clone(), t0)
        .await
        .unwrap();
    assert_eq!((again.through, again.changed), (3, false));
    assert_eq!(again.task, store.get(t.id).await.unwrap());

    // A gap: the store has 3, the report starts at 5.
    let gap = store
        .report(t.id, tok, "w1", vec![ev(5, t0, line("x\n"))], t0)
        .await;
    assert!(
        matches!(
            gap,
            Err(QueueError::ReportGap {
                stored: 3,
                got: 5,
                ..
            })
        ),
        "{gap:?}"
    );

    // Everything from the start again, with the rest: only 4 and 5 are new.
    let t1 = t0 + Duration::seconds(4);
    let mut all = first;
    all.push(ev(4, t1, line("three\n")));
    all.push(ev(5, t1, ReportBody::Finished(AttemptEnd::Exited(0))));
    let done = store
        .report(t.id, tok, "w1", all.clone(), t1)
        .await
        .unwrap();
    assert_eq!((done.through, done.task.status), (5, TaskStatus::Succeeded));
    let logs = store.read_logs(t.id, None, 100).await.unwrap();
    let text: Vec<&[u8]> = logs.iter().map(|c| c.data.as_slice()).collect();
    assert_eq!(text, [b"one\n".as_slice(), b"two\n", b"three\n"]);
    assert_eq!(logs.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(done.task.attempts[0].finished_at, Some(t1));
    // The whole report once more, after the end: acknowledged, nothing changes.
    let repeat = store
        .report(t.id, tok, "w1", all, t1 + Duration::seconds(9))
        .await
        .unwrap();
    assert_eq!((repeat.through, repeat.changed), (5, false));
    assert_eq!(store.get(t.id).await.unwrap(), done.task);
    passed(&*store, "reports_are_ordered_and_idempotent");
}

/// The master declares an attempt lost because its worker went silent; the worker comes
/// back with the attempt's output and end: both are kept, and the task ends as reported,
/// while it has no newer attempt. Another cause of loss, or a newer attempt, refuses it.
pub async fn a_late_result_of_a_silent_attempt_is_accepted(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t0 = now();
    let (t1, t2) = (t0 + Duration::seconds(1), t0 + Duration::seconds(30));
    let t = add(&*store, spec()).await;
    let a = store.assign(t.id, "w1", t0).await.unwrap();
    started(&*store, t.id, a.token(), t0).await.unwrap();
    let silent = LostCause::Silence {
        worker_id: "w1".into(),
    };
    let l = store
        .lose(t.id, a.token(), silent.clone(), t2)
        .await
        .unwrap();
    assert_eq!(l.status, TaskStatus::Queued);
    assert!(l.attempts[0].lost_to_silence);
    assert_eq!(l.attempts[0].outcome, Some(TaskStatus::Lost));
    let late = report(
        &*store,
        t.id,
        a.token(),
        vec![
            (t1, line("done\n")),
            (t1, ReportBody::Finished(AttemptEnd::Exited(0))),
        ],
    )
    .await
    .unwrap();
    assert!(late.late);
    let done = late.task;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.attempts.len(), 1);
    let at = &done.attempts[0];
    assert_eq!(
        (at.outcome, at.finished_at),
        (Some(TaskStatus::Succeeded), Some(t1))
    );
    assert!(at.error.is_none() && !at.lost_to_silence);
    assert_eq!(store.get(t.id).await.unwrap(), done);
    assert_eq!(
        store.read_logs(t.id, None, 10).await.unwrap()[0].data,
        b"done\n"
    );

    // A newer attempt exists: the old attempt's result is stale.
    let u = add(&*store, spec()).await;
    let ua = store.assign(u.id, "w1", t0).await.unwrap();
    let back = store.lose(u.id, ua.token(), silent, t0).await.unwrap();
    let ub = store.assign(u.id, "w2", back.not_before).await.unwrap();
    let r = ended(&*store, u.id, ua.token(), AttemptEnd::Exited(0), t1).await;
    assert!(matches!(r, Err(QueueError::StaleToken { .. })), "{r:?}");
    assert_eq!(store.get(u.id).await.unwrap(), ub);

    // Lost for another cause: no late result.
    let v = add(&*store, spec()).await;
    let va = store.assign(v.id, "w1", t0).await.unwrap();
    let gone = lost(&*store, v.id, va.token(), t0).await.unwrap();
    let r = ended(&*store, v.id, va.token(), AttemptEnd::Exited(0), t1).await;
    assert!(matches!(r, Err(QueueError::AttemptOver { .. })), "{r:?}");
    assert_eq!(store.get(v.id).await.unwrap(), gone);
    passed(&*store, "a_late_result_of_a_silent_attempt_is_accepted");
}

/// Each chunk remembers the attempt that wrote it, so two attempts' output stays apart.
pub async fn output_is_kept_per_attempt(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t0 = now();
    let t = add(
        &*store,
        TaskSpec {
            max_lost_retries: 2,
            ..spec()
        },
    )
    .await;
    let chunk = |s: &str| NewLogChunk {
        stream: LogStream::Stdout,
        time: t0,
        data: s.as_bytes().to_vec(),
    };
    let a = store.assign(t.id, "w1", t0).await.unwrap();
    output(&*store, t.id, a.token(), vec![chunk("first try\n")])
        .await
        .unwrap();
    let back = lost(&*store, t.id, a.token(), t0).await.unwrap();
    let b = store.assign(t.id, "w2", back.not_before).await.unwrap();
    output(&*store, t.id, b.token(), vec![chunk("second try\n")])
        .await
        .unwrap();
    ended(
        &*store,
        t.id,
        b.token(),
        AttemptEnd::Exited(0),
        back.not_before,
    )
    .await
    .unwrap();
    let logs = store.read_logs(t.id, None, 10).await.unwrap();
    let got: Vec<(u32, &[u8])> = logs
        .iter()
        .map(|c| (c.attempt, c.data.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            (1, b"first try\n".as_slice()),
            (2, b"second try\n".as_slice())
        ]
    );
    passed(&*store, "output_is_kept_per_attempt");
}

/// `queued_asks` is `queued` reduced to id, request, pin, constraints and preferences: same order, same filter
/// (not the assigned, not those waiting for a retry), same limit.
pub async fn queued_asks_match_queued(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let sized = Resources {
        cpu_millis: 1500,
        memory_bytes: 3 << 30,
        gpus: 2,
        disk_bytes: 7 << 20,
    };
    for (priority, resources, pin) in [
        (0, Resources::default(), None),
        (5, sized, Some("w9")),
        (0, sized, None),
        (9, Resources::default(), Some("w1")),
    ] {
        // The sized tasks also carry constraints and a preference: placement reads them.
        let (constraints, prefer) = if resources == sized {
            (
                vec![
                    "zone in (a,b)".parse().unwrap(),
                    "disk!=hdd".parse().unwrap(),
                ],
                vec!["rack=r1".parse().unwrap()],
            )
        } else {
            (Vec::new(), Vec::new())
        };
        add(
            &*store,
            TaskSpec {
                priority,
                resources,
                pinned_worker: pin.map(str::to_string),
                constraints,
                prefer,
                ..spec()
            },
        )
        .await;
    }
    let at = now() + Duration::milliseconds(10);
    // One assigned, one waiting for its retry: neither is in either read.
    let gone = add(&*store, spec()).await;
    store.assign(gone.id, "w1", at).await.unwrap();
    let retry = add(
        &*store,
        TaskSpec {
            max_attempts: 2,
            ..spec()
        },
    )
    .await;
    let r = store.assign(retry.id, "w1", at).await.unwrap();
    ended(&*store, retry.id, r.token(), AttemptEnd::Exited(1), at)
        .await
        .unwrap();

    let full = store.queued(at, 100).await.unwrap();
    assert_eq!(full.len(), 4, "{full:?}");
    let want: Vec<QueuedTask> = full.iter().map(QueuedTask::of).collect();
    assert_eq!(store.queued_asks(at, 100).await.unwrap(), want);
    assert_eq!(store.queued_asks(at, 2).await.unwrap(), want[..2]);
    assert_eq!(want[0].pinned_worker.as_deref(), Some("w1"));
    assert_eq!(want[1].resources, sized);
    assert_eq!(want[1].constraints.len(), 2);
    assert_eq!(want[1].constraints[0].to_string(), "zone in (a,b)");
    assert_eq!(want[1].prefer[0].to_string(), "rack=r1");
    assert!(want[0].constraints.is_empty() && want[0].prefer.is_empty());
    // The minimum reservation applies to an unsized request.
    assert!(want[0].reservation().cpu_millis > 0 && want[0].reservation().memory_bytes > 0);
    passed(&*store, "queued_asks_match_queued");
}
