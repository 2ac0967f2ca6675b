//! Cases about searching: every criterion of [`TaskQuery`] (image exact and by prefix,
//! labels, creation time, free text, order and cursor) returns what
//! [`TaskQuery::matches`] says, in the query's order, page by page; and the times the
//! history charts are drawn from.

use std::collections::BTreeMap;

use super::{add, all, claim_at, ended, now, passed, spec, started, Harness};
use crate::history::TaskTimes;
use crate::model::{Task, TaskId, TaskSpec};
use crate::query::TaskQuery;
use crate::report::AttemptEnd;
use crate::store::{QueueStore, StoreOptions};

fn task_spec(image: &str, command: &[&str], labels: &[(&str, &str)]) -> TaskSpec {
    TaskSpec {
        image: image.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..spec()
    }
}

/// Every page of `q` (pages of 2), concatenated.
async fn paged(store: &dyn QueueStore, q: &TaskQuery) -> Vec<TaskId> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&TaskQuery {
                limit: 2,
                before: cursor,
                ..q.clone()
            })
            .await
            .unwrap();
        out.extend(page.iter().map(|t| t.id));
        match page.last() {
            Some(t) if page.len() == 2 => cursor = Some(t.id),
            _ => return out,
        }
    }
}

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Each search criterion, alone and together, in both orders, gives `matches`'s answer.
pub async fn list_searches_match_the_rule(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let specs = [
        task_spec("busybox:1.36", &["echo", "Hello"], &[("team", "ml")]),
        task_spec("registry.example/ml/train:1", &["python", "train.py"], &[]),
        task_spec(
            "registry.example/ml/eval:2",
            &["python", "eval.py"],
            &[("team", "ml"), ("env", "prod")],
        ),
        task_spec("registry.example/web:1", &["serve", "100%_done"], &[]),
        task_spec(
            "busybox:Latest",
            &["sh", "-c", "echo hello"],
            &[("env", "prod")],
        ),
        task_spec("alpine:3", &["sleep", "1"], &[("team", "web")]),
        task_spec("alpine:3", &["say", "\"quoted\" back\\slash"], &[]),
    ];
    let mut made: Vec<Task> = Vec::new();
    for s in specs {
        made.push(add(&*store, s).await);
    }
    // The stored creation times, at the precision each backend keeps.
    let stored = all(&*store).await;
    let created = |i: usize| {
        stored
            .iter()
            .find(|t| t.id == made[i].id)
            .expect("a stored task")
            .created_at
    };
    let queries = [
        TaskQuery {
            image: Some("registry.example/ml/*".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            image: Some("busybox:1.36".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            // A prefix is case-sensitive: `busybox:Latest` is not under `busybox:l*`.
            image: Some("busybox:l*".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            image: Some("busybox*".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            labels: labels(&[("team", "ml")]),
            ..TaskQuery::default()
        },
        TaskQuery {
            labels: labels(&[("team", "ml"), ("env", "prod")]),
            ..TaskQuery::default()
        },
        TaskQuery {
            text: Some("hello".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            // LIKE's and regular expressions' wildcards are literal.
            text: Some("0%_d".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            text: Some("%".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            text: Some(".py".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            // Characters JSON escapes in the stored body.
            text: Some("\"QUOTED\" BACK\\".into()),
            ..TaskQuery::default()
        },
        TaskQuery {
            text: Some(made[3].id.to_string()[24..].to_uppercase()),
            ..TaskQuery::default()
        },
        TaskQuery {
            created_after: Some(created(2)),
            created_before: Some(created(5)),
            ..TaskQuery::default()
        },
        TaskQuery {
            image: Some("registry.example/*".into()),
            text: Some("PY".into()),
            created_after: Some(created(1)),
            ..TaskQuery::default()
        },
        TaskQuery::default(),
    ];
    for q in queries {
        for oldest_first in [false, true] {
            let q = TaskQuery {
                oldest_first,
                ..q.clone()
            };
            let mut want: Vec<TaskId> = stored
                .iter()
                .filter(|t| q.matches(t))
                .map(|t| t.id)
                .collect();
            want.sort();
            if !oldest_first {
                want.reverse();
            }
            // Each query but the case-sensitive prefix finds something: none passes empty.
            let expect_none = q.image.as_deref() == Some("busybox:l*");
            assert_eq!(want.is_empty(), expect_none, "query {q:?} matched {want:?}");
            assert_eq!(paged(&*store, &q).await, want, "query {q:?}");
        }
    }
    passed(&*store, "list_searches_match_the_rule");
}

/// `recent_times` returns what ended since the bound (most recent ends first, at most the
/// limit) and what runs now, with the first attempt's start; not queued tasks, not older
/// ends.
pub async fn recent_times_are_what_the_history_needs(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    // Claims happen now; the reports carry later times, so "older" ends can be made.
    let base = now();
    let secs = chrono::Duration::seconds;
    for _ in 0..5 {
        add(&*store, spec()).await;
    }
    // Claimed in creation order: old, a, b, c; the fifth stays queued.
    let mut claimed = Vec::new();
    for _ in 0..4 {
        claimed.push(store.claim(&claim_at("w1", now())).await.unwrap().unwrap());
    }
    let (old, a, b, c) = (&claimed[0], &claimed[1], &claimed[2], &claimed[3]);
    let finish = |t: &Task, start: i64, end: i64, how: AttemptEnd| {
        let (id, token) = (t.id, t.token());
        let store = store.clone();
        async move {
            started(&*store, id, token, base + secs(start))
                .await
                .unwrap();
            ended(&*store, id, token, how, base + secs(end))
                .await
                .unwrap();
        }
    };
    finish(old, 1, 2, AttemptEnd::Exited(0)).await;
    finish(a, 3, 40, AttemptEnd::Exited(0)).await;
    finish(b, 4, 60, AttemptEnd::Error("no".into())).await;
    started(&*store, c.id, c.token(), base + secs(5))
        .await
        .unwrap();
    let stored = all(&*store).await;
    let times = |id| TaskTimes::of(stored.iter().find(|t| t.id == id).unwrap());
    assert!(times(a.id).first_start.is_some() && times(b.id).finished_at.is_some());

    let since = base + secs(30);
    let mut got = store.recent_times(since, 100).await.unwrap();
    let key = |t: &TaskTimes| (t.created_at, t.finished_at);
    got.sort_by_key(key);
    let mut want = vec![times(a.id), times(b.id), times(c.id)];
    want.sort_by_key(key);
    assert_eq!(got, want);
    // A limit keeps the most recent end (b's), and the running task.
    let mut got = store.recent_times(since, 1).await.unwrap();
    got.sort_by_key(key);
    let mut want = vec![times(b.id), times(c.id)];
    want.sort_by_key(key);
    assert_eq!(got, want);
    passed(&*store, "recent_times_are_what_the_history_needs");
}
