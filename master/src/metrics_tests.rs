//! Tests of [`super`]: counting once, scrape-time gauges, the exposition.

use super::*;
use cloudai_queue::{Attempt, TaskSpec};

fn task_with(attempt: Attempt, created: DateTime<Utc>) -> Task {
    Task {
        id: TaskId::new(),
        spec: TaskSpec::new("cloudai/busybox:test"),
        status: attempt.outcome.unwrap_or(TaskStatus::Running),
        created_at: created,
        updated_at: created,
        not_before: created,
        finished_at: attempt.finished_at,
        attempts: vec![attempt],
        cancel_requested: false,
        exit_code: None,
        error: None,
        submitted_by: None,
    }
}

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn starts_and_ends_count_once_however_often_a_report_is_stored() {
    let m = Metrics::new();
    let t0 = Utc::now() - chrono::Duration::seconds(10);
    let mut a = Attempt::new(1, 7, "w1", t0 + chrono::Duration::seconds(1));
    a.started_at = Some(t0 + chrono::Duration::seconds(2));
    let mut t = task_with(a.clone(), t0);
    m.attempt_stored(&t, 7);
    m.attempt_stored(&t, 7); // the same start stored again (a re-send)
    a.finished_at = Some(t0 + chrono::Duration::seconds(5));
    a.outcome = Some(TaskStatus::Succeeded);
    t.attempts = vec![a];
    m.attempt_stored(&t, 7);
    m.attempt_stored(&t, 7);
    m.attempt_stored(&t, 99); // no such attempt: nothing
    let text = m.render(&ScrapeView {
        stats: None,
        epoch: Some(3),
        workers: &[],
        seen: &HashMap::new(),
        now: Utc::now(),
        commands: &[],
    });
    assert_eq!(sample(&text, "cloudai_attempts_started_total"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "cloudai_attempts_finished_total{outcome=\"succeeded\"}"
        ),
        Some(1.0)
    );
    // The queue wait (2 s) and the run (3 s), observed once each.
    assert_eq!(
        sample(&text, "cloudai_task_queue_wait_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "cloudai_task_queue_wait_seconds_sum"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "cloudai_attempt_run_seconds_sum"), Some(3.0));
    assert_eq!(sample(&text, "cloudai_leader_epoch"), Some(3.0));
    assert_eq!(sample(&text, "cloudai_store_up"), Some(0.0));
    assert!(
        text.contains("# TYPE cloudai_task_queue_wait_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("# UNIT cloudai_task_queue_wait_seconds seconds"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn scrape_gauges_follow_the_store_and_the_workers() {
    let m = Metrics::new();
    let mut stats = QueueStats::default();
    stats.counts.insert(TaskStatus::Queued, 4);
    stats.oldest_queued_at = Some(Utc::now() - chrono::Duration::seconds(30));
    let text = m.render(&ScrapeView {
        stats: Some(&stats),
        epoch: None,
        workers: &[],
        seen: &HashMap::new(),
        now: Utc::now(),
        commands: &[],
    });
    assert_eq!(sample(&text, "cloudai_tasks{status=\"queued\"}"), Some(4.0));
    assert_eq!(
        sample(&text, "cloudai_tasks{status=\"running\"}"),
        Some(0.0)
    );
    assert!(sample(&text, "cloudai_oldest_queued_age_seconds").is_some_and(|v| v >= 30.0));
    assert_eq!(sample(&text, "cloudai_leader"), Some(0.0));
    assert_eq!(
        sample(&text, "cloudai_workers{health=\"healthy\"}"),
        Some(0.0)
    );
    m.store_call("assign", Duration::from_millis(3), true);
    let text = m.render(&ScrapeView {
        stats: Some(&stats),
        epoch: None,
        workers: &[],
        seen: &HashMap::new(),
        now: Utc::now(),
        commands: &[],
    });
    assert_eq!(
        sample(
            &text,
            "cloudai_store_operation_seconds_count{op=\"assign\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "cloudai_store_errors_total{op=\"assign\"}"),
        Some(1.0)
    );
}

#[test]
fn store_commands_show_the_stores_counts() {
    let m = Metrics::new();
    let scrape = |commands: &[(String, u64)]| {
        m.render(&ScrapeView {
            stats: None,
            epoch: None,
            workers: &[],
            seen: &HashMap::new(),
            now: Utc::now(),
            commands,
        })
    };
    let text = scrape(&[("find".into(), 3), ("update".into(), 5)]);
    let find = "cloudai_store_commands_total{command=\"find\"}";
    assert_eq!(sample(&text, find), Some(3.0), "{text}");
    let update = "cloudai_store_commands_total{command=\"update\"}";
    assert_eq!(sample(&text, update), Some(5.0));
    // The store's count is the truth: a later scrape shows it, not a sum.
    let text = scrape(&[("find".into(), 4), ("update".into(), 5)]);
    assert_eq!(sample(&text, find), Some(4.0));
}
