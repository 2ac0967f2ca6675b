//! The last hour in numbers, for the dashboard's charts: [`TaskTimes`] (what a store
//! returns about recently ended and running tasks, times only) and [`buckets`], the pure
//! function that counts starts and ends per minute and the queue wait of the tasks that
//! ended in each. Read from the store, so the charts survive a master's restart.

use chrono::{DateTime, Duration, Utc};

use crate::model::{Task, TaskStatus};

/// Rows a store returns at most for one history (the most recently ended first); past
/// it the answer says `sampled`.
pub const MAX_HISTORY_ROWS: usize = 20_000;

/// The times of one task, as the history needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskTimes {
    /// Its status now.
    pub status: TaskStatus,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its first attempt's container started (the queue wait ends there, as in
    /// the `cloudai_task_queue_wait_seconds` metric).
    pub first_start: Option<DateTime<Utc>>,
    /// When it ended, if it has.
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskTimes {
    /// The times of `t`.
    pub fn of(t: &Task) -> Self {
        TaskTimes {
            status: t.status,
            created_at: t.created_at,
            first_start: t.attempts.first().and_then(|a| a.started_at),
            finished_at: t.finished_at,
        }
    }
}

/// One minute (or `bucket`) of the history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bucket {
    /// Its start.
    pub start: DateTime<Utc>,
    /// Tasks whose first attempt started in it.
    pub started: u64,
    /// Tasks that ended `succeeded` in it.
    pub succeeded: u64,
    /// Tasks that ended `failed`, `timed_out` or `lost` in it.
    pub failed: u64,
    /// Tasks that ended `cancelled` in it.
    pub cancelled: u64,
    /// Median queue wait of the tasks that ended in it, in seconds.
    pub queue_wait_p50: Option<f64>,
    /// 95th percentile of the same.
    pub queue_wait_p95: Option<f64>,
}

/// `n` buckets of `width` ending at `now` (oldest first), filled from `rows`.
pub fn buckets(rows: &[TaskTimes], now: DateTime<Utc>, width: Duration, n: usize) -> Vec<Bucket> {
    let span = i32::try_from(n).map(|n| width * n).unwrap_or(width);
    let since = now - span;
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: since + width * i32::try_from(i).unwrap_or(0),
            ..Bucket::default()
        })
        .collect();
    let mut waits: Vec<Vec<f64>> = vec![Vec::new(); n];
    let index = |t: DateTime<Utc>| -> Option<usize> {
        if t < since || t >= now {
            return None;
        }
        let ms = width.num_milliseconds().max(1);
        usize::try_from((t - since).num_milliseconds() / ms)
            .ok()
            .filter(|i| *i < n)
    };
    for r in rows {
        if let Some(i) = r.first_start.and_then(index) {
            out[i].started += 1;
        }
        let Some(i) = r.finished_at.and_then(index) else {
            continue;
        };
        match r.status {
            TaskStatus::Succeeded => out[i].succeeded += 1,
            TaskStatus::Cancelled => out[i].cancelled += 1,
            TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Lost => out[i].failed += 1,
            _ => {}
        }
        if let Some(start) = r.first_start {
            waits[i].push((start - r.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
    }
    for (b, mut w) in out.iter_mut().zip(waits) {
        w.sort_by(f64::total_cmp);
        b.queue_wait_p50 = quantile(&w, 0.50);
        b.queue_wait_p95 = quantile(&w, 0.95);
    }
    out
}

/// The `q` quantile of sorted `v` (nearest rank), `None` when empty.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn row(status: TaskStatus, created: i64, start: Option<i64>, end: Option<i64>) -> TaskTimes {
        TaskTimes {
            status,
            created_at: at(created),
            first_start: start.map(at),
            finished_at: end.map(at),
        }
    }

    #[test]
    fn counts_land_in_their_minute_and_waits_are_per_minute_of_the_end() {
        let now = at(600);
        let rows = [
            // Ended in the last minute (540..600): two successes, waits 2 s and 10 s.
            row(TaskStatus::Succeeded, 530, Some(532), Some(545)),
            row(TaskStatus::Succeeded, 500, Some(510), Some(599)),
            row(TaskStatus::TimedOut, 480, Some(481), Some(550)),
            row(TaskStatus::Cancelled, 540, None, Some(541)),
            // Running: counts as a start in its minute only.
            row(TaskStatus::Running, 100, Some(130), None),
            // Before the window, and at `now` itself: outside.
            row(TaskStatus::Succeeded, -100, Some(-99), Some(-98)),
            row(TaskStatus::Failed, 590, Some(595), Some(600)),
        ];
        let b = buckets(&rows, now, Duration::seconds(60), 10);
        assert_eq!(b.len(), 10);
        assert_eq!(b[0].start, at(0));
        let last = &b[9];
        assert_eq!((last.succeeded, last.failed, last.cancelled), (2, 1, 1));
        // Waits 2, 10 and 1 s: the median 2, the 95th percentile 10.
        assert_eq!(last.queue_wait_p50, Some(2.0));
        assert_eq!(last.queue_wait_p95, Some(10.0));
        assert_eq!(b[2].started, 1, "the running task started at 130 s");
        assert_eq!(b[8].started, 3, "starts at 481, 510 and 532 s");
        assert_eq!(
            b[9].started, 1,
            "the start at 595 s; its end at `now` is outside"
        );
        assert!(b[..8].iter().all(|x| x.succeeded + x.failed == 0));
        assert_eq!(b[0].queue_wait_p50, None);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
