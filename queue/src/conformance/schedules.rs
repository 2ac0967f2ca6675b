//! Cases about cron schedules: the records (add, a taken name, compare-and-set, remove),
//! and firing exactly once: two masters firing the same due tick at once make one run,
//! a fire repeated after a crash between the run and its history (and after the store is
//! reopened) makes none more, and ticks missed while nobody fired start one run.

use chrono::Duration;

use super::{now, passed, spec, Harness};
use crate::error::QueueError;
use crate::query::TaskQuery;
use crate::schedule::{self, Overlap, Schedule};
use crate::store::{QueueStore, StoreOptions};

fn every_second(name: &str, at: chrono::DateTime<chrono::Utc>) -> Schedule {
    schedule::new_schedule(name, "* * * * * *", "UTC", Overlap::Allow, spec(), None, at).unwrap()
}

async fn runs_of(store: &dyn QueueStore, name: &str) -> usize {
    let q = TaskQuery {
        labels: [(schedule::LABEL.to_string(), name.to_string())].into(),
        limit: 1000,
        ..TaskQuery::default()
    };
    store.list(&q).await.unwrap().len()
}

/// Schedules are added once per name, read back whole, changed only by a compare-and-set
/// on their version, and removed.
pub async fn schedules_are_stored_and_changed_by_compare_and_set(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let t = now();
    let b = every_second("b-nightly", t);
    let a = schedule::new_schedule(
        "a-hourly",
        "0 * * * *",
        "Europe/Berlin",
        Overlap::Skip,
        spec(),
        Some("ann".into()),
        t,
    )
    .unwrap();
    store.add_schedule(&b).await.unwrap();
    store.add_schedule(&a).await.unwrap();
    assert!(matches!(
        store.add_schedule(&b).await,
        Err(QueueError::ScheduleExists(n)) if n == "b-nightly"
    ));
    assert_eq!(
        store.get_schedule("a-hourly").await.unwrap().as_ref(),
        Some(&a)
    );
    assert_eq!(store.get_schedule("none").await.unwrap(), None);
    let names: Vec<String> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a-hourly", "b-nightly"]);

    let mut paused = a.clone();
    paused.paused = true;
    paused.version += 1;
    assert!(
        !store
            .replace_schedule(&paused, a.version + 7)
            .await
            .unwrap(),
        "stale version"
    );
    assert!(store.replace_schedule(&paused, a.version).await.unwrap());
    assert!(
        !store.replace_schedule(&paused, a.version).await.unwrap(),
        "only once"
    );
    assert!(
        store
            .get_schedule("a-hourly")
            .await
            .unwrap()
            .unwrap()
            .paused
    );
    assert!(store.remove_schedule("a-hourly").await.unwrap());
    assert!(!store.remove_schedule("a-hourly").await.unwrap());
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);
    passed(
        &*store,
        "schedules_are_stored_and_changed_by_compare_and_set",
    );
}

/// A due tick fires once: two passes at once make one run, a pass after a crash that
/// lost the history write makes no second, nor does one after the store is reopened;
/// ticks missed meanwhile are started once and the history says so.
pub async fn a_schedule_fires_each_tick_exactly_once(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    // 100 ms past a whole second: ticks at +1 s … +5 s are due at +5.5 s.
    let t0 = chrono::DateTime::from_timestamp(now().timestamp(), 100_000_000).unwrap();
    let s = every_second("every-second", t0);
    store.add_schedule(&s).await.unwrap();
    // Five seconds without a master: due once, for the latest tick.
    let later = t0 + Duration::milliseconds(5500);
    let (x, y) = tokio::join!(
        schedule::fire_due(&*store, later),
        schedule::fire_due(&*store, later)
    );
    let fired: Vec<_> = x.unwrap().into_iter().chain(y.unwrap()).collect();
    assert_eq!(fired.len(), 1, "one history entry: {fired:?}");
    assert_eq!(runs_of(&*store, "every-second").await, 1, "one run");
    let f = &fired[0].fire;
    assert!(
        f.note.contains("started once for 4 missed tick(s)"),
        "{}",
        f.note
    );
    let stored = store.get_schedule("every-second").await.unwrap().unwrap();
    assert_eq!(stored.history, vec![f.clone()]);
    assert_eq!(stored.last_task, f.task);
    assert!(stored.next_at.unwrap() > later);

    // A crash after the run was enqueued but before its history was written: the store
    // still holds the schedule as it was. The same tick fires into the same run.
    let mut lost = s.clone();
    lost.version = stored.version + 1;
    assert!(store.replace_schedule(&lost, stored.version).await.unwrap());
    drop(store);
    let store = h.open(StoreOptions::default()).await;
    let again = schedule::fire_due(&*store, later).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].fire.task, f.task, "the same run");
    assert_eq!(runs_of(&*store, "every-second").await, 1, "no second run");
    assert!(
        schedule::fire_due(&*store, later).await.unwrap().is_empty(),
        "done"
    );

    // run-now: a run of its own, the next tick unchanged.
    let before = store.get_schedule("every-second").await.unwrap().unwrap();
    let manual = schedule::run_now(&*store, "every-second", later)
        .await
        .unwrap();
    assert_eq!(manual.fire.note, "run-now");
    assert_eq!(runs_of(&*store, "every-second").await, 2);
    let after = store.get_schedule("every-second").await.unwrap().unwrap();
    assert_eq!(after.next_at, before.next_at);
    assert!(matches!(
        schedule::run_now(&*store, "nobody", later).await,
        Err(QueueError::NoSchedule(_))
    ));
    passed(&*store, "a_schedule_fires_each_tick_exactly_once");
}
