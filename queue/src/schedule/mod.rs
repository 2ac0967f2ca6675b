//! Cron schedules (`cloudai schedule add NAME --cron '0 3 * * *' --tz Europe/Berlin …`):
//! a task spec enqueued as an ordinary task at each time a cron pattern names.
//!
//! - The rule, pure: [`When`] (the pattern in its time zone), [`due`] (which tick fires
//!   now; ticks missed while no master fired collapse into the latest one, started once),
//!   [`decide`] (the overlap policy against the previous run), [`record`] (the history).
//! - The passes through any [`QueueStore`]: [`fire_due`] (the leader, every second) and
//!   [`run_now`].
//!
//! **Exactly once.** A run is enqueued with the idempotency key [`run_key`] of its
//! schedule and tick, so a retried or repeated fire (a failover mid-fire, two masters,
//! a restart before the history was written) returns the same task instead of a second;
//! the history is then written by a compare-and-set on the schedule's `version`, so it
//! records each fire once too.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

mod fire;

pub use fire::{fire_due, run_now, Fired};

use crate::error::{QueueError, Result};
use crate::model::{TaskId, TaskSpec, TaskStatus};

/// Fires kept in a schedule's history (the newest).
pub const HISTORY: usize = 20;
/// The label each run carries, with the schedule's name.
pub const LABEL: &str = "cloudai.schedule";
/// Missed ticks counted at most (a longer outage says "at least").
pub(crate) const MAX_MISSED_COUNT: u64 = 1000;

/// What a fire does while the previous run has not ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlap {
    /// This tick is skipped (said in the history); the default.
    #[default]
    #[serde(rename = "skip")]
    Skip,
    /// Runs overlap.
    #[serde(rename = "allow")]
    Allow,
    /// The previous run is cancelled, then the new one starts.
    #[serde(rename = "cancel-previous")]
    CancelPrevious,
}

impl Overlap {
    /// The name in flags and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
            Overlap::CancelPrevious => "cancel-previous",
        }
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Overlap {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Overlap> {
        match s.trim() {
            "skip" => Ok(Overlap::Skip),
            "allow" => Ok(Overlap::Allow),
            "cancel-previous" => Ok(Overlap::CancelPrevious),
            other => Err(QueueError::invalid(
                "overlap",
                format!("{other:?} is not skip, allow or cancel-previous"),
            )),
        }
    }
}

/// One fire, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fire {
    /// The time the pattern named (for `run-now`, the time asked).
    pub tick: DateTime<Utc>,
    /// When the master fired it.
    pub at: DateTime<Utc>,
    /// The run it enqueued; `None` when it was skipped.
    pub task: Option<TaskId>,
    /// What happened beyond a plain start: missed ticks, a skip, a cancel, `run-now`.
    pub note: String,
}

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its name (unique).
    pub name: String,
    /// The cron pattern: 5 fields (minute hour day month weekday), or 6 with seconds first.
    pub cron: String,
    /// The IANA time zone the pattern is read in.
    pub tz: String,
    /// What a fire does while the previous run has not ended.
    pub overlap: Overlap,
    /// The task each run is.
    pub spec: TaskSpec,
    /// No fires while paused.
    pub paused: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// Who added it; its runs are submitted as this user.
    pub created_by: Option<String>,
    /// The next tick to fire; `None` when the pattern names no later time.
    pub next_at: Option<DateTime<Utc>>,
    /// The newest run it enqueued.
    pub last_task: Option<TaskId>,
    /// The newest fires, oldest first (at most [`HISTORY`]).
    pub history: Vec<Fire>,
    /// Bumped by every change: the compare-and-set of [`QueueStore::replace_schedule`].
    pub version: u64,
}

/// `t` without its fraction of a second (croner reads times to the second).
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// A pattern in its time zone.
#[derive(Clone, Debug)]
pub struct When {
    cron: Cron,
    tz: Tz,
}

impl When {
    /// Parses `cron` (5 fields, or 6 with seconds first) and the IANA zone `tz`.
    pub fn parse(cron: &str, tz: &str) -> Result<When> {
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron.trim())
            .map_err(|e| {
                QueueError::invalid(
                    "cron",
                    format!(
                        "{cron:?}: {e} (write 5 fields, minute hour day month weekday, e.g. \
                         '0 3 * * *'; or 6 with seconds first)"
                    ),
                )
            })?;
        let zone: Tz = tz.trim().parse().map_err(|_| {
            QueueError::invalid(
                "tz",
                format!("{tz:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
            )
        })?;
        Ok(When {
            cron: parsed,
            tz: zone,
        })
    }

    /// The first tick strictly after `t` (ticks fall on whole seconds).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&whole_second(t).with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&whole_second(t).with_timezone(&self.tz), true)
            .ok()
            .map(|p| p.with_timezone(&Utc))
    }
}

/// A schedule name: the rules of user names (1–64 letters, digits, `.`, `_`, `-`, `@`).
pub fn validate_name(name: &str) -> Result<()> {
    crate::users::validate_user_name(name).map_err(|e| match e {
        QueueError::Invalid { reason, .. } => QueueError::invalid("schedule name", reason),
        e => e,
    })
}

/// A new schedule, checked whole: name, pattern, zone and spec (a run cannot wait on
/// other tasks, be an array element or carry its own idempotency key).
pub fn new_schedule(
    name: &str,
    cron: &str,
    tz: &str,
    overlap: Overlap,
    spec: TaskSpec,
    created_by: Option<String>,
    now: DateTime<Utc>,
) -> Result<Schedule> {
    validate_name(name)?;
    let when = When::parse(cron, tz)?;
    crate::validate::validate_spec(&spec)?;
    if !spec.after.is_empty() || spec.array.is_some() || spec.not_before.is_some() {
        return Err(QueueError::invalid(
            "spec",
            "a schedule's task cannot have --after, --array, --at or --in",
        ));
    }
    if spec.idempotency_key.is_some() {
        return Err(QueueError::invalid(
            "spec",
            "a schedule's runs get their own idempotency keys; give none",
        ));
    }
    let next_at = when.next_after(now);
    if next_at.is_none() {
        return Err(QueueError::invalid(
            "cron",
            format!("{cron:?} names no time after now"),
        ));
    }
    Ok(Schedule {
        name: name.to_string(),
        cron: cron.trim().to_string(),
        tz: tz.trim().to_string(),
        overlap,
        spec,
        paused: false,
        created_at: now,
        created_by,
        next_at,
        last_task: None,
        history: Vec::new(),
        version: 1,
    })
}

/// The tick to fire at `now`, and how many earlier ticks since `next_at` it stands for
/// (missed while no master fired); `None` when nothing is due.
pub fn due(s: &Schedule, when: &When, now: DateTime<Utc>) -> Option<(DateTime<Utc>, u64)> {
    let next = s.next_at.filter(|n| !s.paused && *n <= now)?;
    let tick = when
        .latest_at_or_before(now)
        .filter(|t| *t >= next)
        .unwrap_or(next);
    let mut missed = 0;
    let mut t = next;
    while t < tick && missed < MAX_MISSED_COUNT {
        missed += 1;
        match when.next_after(t) {
            Some(n) => t = n,
            None => break,
        }
    }
    Some((tick, missed))
}

/// What a fire does, given the previous run and its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Enqueue the run.
    Start,
    /// Enqueue nothing; the history says why.
    Skip(String),
    /// Cancel this run, then enqueue the new one.
    CancelThenStart(TaskId),
}

/// The overlap policy against the previous run (`None`: there is none, or it ended).
pub fn decide(overlap: Overlap, previous: Option<(TaskId, TaskStatus)>) -> Decision {
    match previous.filter(|(_, s)| !s.is_terminal()) {
        None => Decision::Start,
        Some((id, status)) => match overlap {
            Overlap::Allow => Decision::Start,
            Overlap::Skip => Decision::Skip(format!("skipped: the previous run {id} is {status}")),
            Overlap::CancelPrevious => Decision::CancelThenStart(id),
        },
    }
}

/// The idempotency key of the run of schedule `name` at `tick`.
pub fn run_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "cloudai.schedule/{name}/{}",
        tick.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// The task of the run at `tick`: the schedule's spec with its label, its env
/// (`CLOUDAI_SCHEDULE`, `CLOUDAI_SCHEDULED_AT`) and the run's key.
pub fn run_spec(s: &Schedule, tick: DateTime<Utc>, key: String) -> TaskSpec {
    let mut spec = s.spec.clone();
    spec.labels.insert(LABEL.into(), s.name.clone());
    spec.env.insert("CLOUDAI_SCHEDULE".into(), s.name.clone());
    spec.env.insert(
        "CLOUDAI_SCHEDULED_AT".into(),
        tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    spec.idempotency_key = Some(key);
    spec
}

/// `s` after `fire`: history (newest [`HISTORY`]), the last run, and (for a tick of the
/// pattern) the next tick after it.
pub fn record(s: &Schedule, when: &When, fire: Fire, advance: bool) -> Schedule {
    let mut n = s.clone();
    if advance {
        n.next_at = when.next_after(fire.tick);
    }
    if fire.task.is_some() {
        n.last_task = fire.task;
    }
    n.history.push(fire);
    let extra = n.history.len().saturating_sub(HISTORY);
    n.history.drain(..extra);
    n.version += 1;
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(cron: &str, tz: &str, now: DateTime<Utc>) -> (Schedule, When) {
        let s = new_schedule(
            "nightly",
            cron,
            tz,
            Overlap::Skip,
            TaskSpec::new("busybox"),
            None,
            now,
        )
        .unwrap();
        (s, When::parse(cron, tz).unwrap())
    }

    #[test]
    fn the_pattern_is_read_in_its_zone() {
        let now = at("2026-12-01T12:00:00Z");
        let (s, _) = sched("0 3 * * *", "Europe/Berlin", now);
        // 03:00 in Berlin in winter is 02:00 UTC, the next day.
        assert_eq!(s.next_at, Some(at("2026-12-02T02:00:00Z")));
        let (s, _) = sched("0 3 * * *", "UTC", now);
        assert_eq!(s.next_at, Some(at("2026-12-02T03:00:00Z")));
        let (s, _) = sched("*/10 * * * * *", "UTC", now);
        assert_eq!(s.next_at, Some(at("2026-12-01T12:00:10Z")), "seconds first");
    }

    #[test]
    fn bad_input_is_named() {
        let now = Utc::now();
        let e = |cron: &str, tz: &str| {
            new_schedule(
                "n",
                cron,
                tz,
                Overlap::Skip,
                TaskSpec::new("busybox"),
                None,
                now,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(
            e("0 3 * *", "UTC").contains("invalid cron"),
            "{}",
            e("0 3 * *", "UTC")
        );
        assert!(e("61 * * * *", "UTC").contains("invalid cron"));
        assert!(e("0 3 * * *", "Mars/Olympus").contains("not an IANA time zone"));
        assert!(new_schedule(
            "bad name",
            "* * * * *",
            "UTC",
            Overlap::Skip,
            TaskSpec::new("busybox"),
            None,
            now
        )
        .unwrap_err()
        .to_string()
        .contains("schedule name"));
        let mut spec = TaskSpec::new("busybox");
        spec.idempotency_key = Some("k".into());
        assert!(new_schedule("n", "* * * * *", "UTC", Overlap::Skip, spec, None, now).is_err());
        assert_eq!(
            "cancel-previous".parse::<Overlap>().unwrap(),
            Overlap::CancelPrevious
        );
        assert!("sometimes".parse::<Overlap>().is_err());
    }

    #[test]
    fn missed_ticks_collapse_into_the_latest_once() {
        let t0 = at("2026-12-01T00:00:30Z");
        let (s, when) = sched("0 * * * *", "UTC", t0);
        assert_eq!(s.next_at, Some(at("2026-12-01T01:00:00Z")));
        assert_eq!(due(&s, &when, at("2026-12-01T00:59:59Z")), None);
        assert_eq!(
            due(&s, &when, at("2026-12-01T01:00:00Z")),
            Some((at("2026-12-01T01:00:00Z"), 0))
        );
        // Down from 00:30 to 04:20: 01:00, 02:00, 03:00, 04:00 were due; 04:00 fires,
        // standing for three missed.
        let (tick, missed) = due(&s, &when, at("2026-12-01T04:20:00Z")).unwrap();
        assert_eq!((tick, missed), (at("2026-12-01T04:00:00Z"), 3));
        let fire = Fire {
            tick,
            at: at("2026-12-01T04:20:00Z"),
            task: Some(TaskId::new()),
            note: String::new(),
        };
        let after = record(&s, &when, fire, true);
        assert_eq!(after.next_at, Some(at("2026-12-01T05:00:00Z")));
        assert_eq!(due(&after, &when, at("2026-12-01T04:20:01Z")), None, "once");
        assert_eq!(after.version, s.version + 1);
        let mut paused = after.clone();
        paused.paused = true;
        assert_eq!(due(&paused, &when, at("2026-12-01T09:00:00Z")), None);
    }

    #[test]
    fn overlap_policies() {
        let prev = TaskId::new();
        assert_eq!(decide(Overlap::Skip, None), Decision::Start);
        assert_eq!(
            decide(Overlap::Skip, Some((prev, TaskStatus::Succeeded))),
            Decision::Start
        );
        assert!(matches!(
            decide(Overlap::Skip, Some((prev, TaskStatus::Running))),
            Decision::Skip(why) if why.contains(&prev.to_string())
        ));
        assert_eq!(
            decide(Overlap::Allow, Some((prev, TaskStatus::Queued))),
            Decision::Start
        );
        assert_eq!(
            decide(Overlap::CancelPrevious, Some((prev, TaskStatus::Running))),
            Decision::CancelThenStart(prev)
        );
    }

    #[test]
    fn history_keeps_the_newest_and_runs_carry_their_key() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let (mut s, when) = sched("* * * * *", "UTC", now);
        for i in 0..(HISTORY + 5) {
            let f = Fire {
                tick: now + chrono::Duration::minutes(i as i64),
                at: now,
                task: None,
                note: format!("{i}"),
            };
            s = record(&s, &when, f, true);
        }
        assert_eq!(s.history.len(), HISTORY);
        assert_eq!(s.history[0].note, "5");
        let key = run_key("nightly", now);
        let spec = run_spec(&s, now, key.clone());
        assert_eq!(spec.idempotency_key, Some(key));
        assert_eq!(spec.labels[LABEL], "nightly");
        assert_eq!(spec.env["CLOUDAI_SCHEDULE"], "nightly");
        assert_ne!(
            run_key("nightly", now),
            run_key("nightly", now + chrono::Duration::seconds(1))
        );
    }
}
