//! [`TaskCriteria`]: the search flags `cloudai tasks`, `cloudai cancel` and `cloudai retry`
//! share (status, worker, submitter, image, labels, creation time, free text, array), and their
//! one translation into the protocol's `TaskFilter`. The master checks them again
//! (`master/src/task_filter.rs`); here they fail early with the flag's name.

use chrono::{DateTime, Utc};
use clap::Args;
use cloudai_proto::{convert, pb};

use crate::commands::inspect::parse_statuses;
use crate::exit::{CliError, CliResult};

/// Which tasks.
#[derive(Debug, Clone, Default, Args)]
pub struct TaskCriteria {
    /// Only this status (repeatable or comma-separated): queued, assigned, running,
    /// succeeded, failed, cancelled, timed_out, lost.
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<String>,
    /// Only tasks whose current or last attempt is on this worker.
    #[arg(long, value_name = "ID")]
    pub worker: Option<String>,
    /// Only tasks this user submitted (the SUBMITTER column; tasks enqueued without auth
    /// have none).
    #[arg(long, value_name = "NAME")]
    pub submitter: Option<String>,
    /// Only this image (exact), or images starting with a prefix ending in `*`.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Only tasks with this label (repeatable: all must hold).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Only tasks created at or after this time: RFC 3339 (2026-12-01T18:00:00Z) or an
    /// age (30m, 2h, 1d ago).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only tasks created before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only tasks whose id, image or a command word contains this text (any case).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Only the elements of this job array (the whole id `enqueue --array` printed).
    #[arg(long, value_name = "ARRAY_ID")]
    pub array: Option<String>,
}

impl TaskCriteria {
    /// True when no criterion is given.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
            && self.worker.is_none()
            && self.submitter.is_none()
            && self.image.is_none()
            && self.labels.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.search.is_none()
            && self.array.is_none()
    }

    /// The criteria as the protocol's filter, times relative to `now`.
    pub fn to_filter(&self, now: DateTime<Utc>) -> CliResult<pb::TaskFilter> {
        if let Some(w) = &self.worker {
            cloudai_queue::validate::validate_worker_id(w)
                .map_err(|e| CliError::invalid(e.to_string()))?;
        }
        if self
            .submitter
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(CliError::invalid("--submitter needs a user name"));
        }
        let labels = self
            .labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
                _ => Err(CliError::invalid(format!("--label {l:?} is not KEY=VALUE"))),
            })
            .collect::<CliResult<_>>()?;
        let time = |flag: &str, v: &Option<String>| -> CliResult<Option<prost_types::Timestamp>> {
            v.as_deref()
                .map(|v| time_arg(flag, v, now).map(convert::timestamp))
                .transpose()
        };
        Ok(pb::TaskFilter {
            statuses: parse_statuses(&self.status)?
                .into_iter()
                .map(|s| pb::TaskStatus::from(s) as i32)
                .collect(),
            worker_id: self.worker.clone(),
            submitted_by: self.submitter.clone(),
            image: self.image.clone(),
            labels,
            created_after: time("--since", &self.since)?,
            created_before: time("--until", &self.until)?,
            text: self.search.clone(),
            array: self.array.clone(),
        })
    }
}

/// `v` as a time: RFC 3339, or an age before `now` (`30m`, `2h ago`).
fn time_arg(flag: &str, v: &str, now: DateTime<Utc>) -> CliResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = v.trim().trim_end_matches("ago").trim();
    crate::units::parse_duration(age)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            CliError::invalid(format!(
                "{flag} {v:?} is neither an RFC 3339 time (2026-12-01T18:00:00Z) nor an age \
                 (30m, 2h, 1d)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_ages_and_labels_key_value() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = TaskCriteria {
            since: Some("2h ago".into()),
            until: Some("2026-12-01T17:30:00+01:00".into()),
            labels: vec!["team=ml".into(), "note=a=b".into()],
            ..TaskCriteria::default()
        };
        let f = c.to_filter(now).unwrap();
        assert_eq!(
            f.created_after.unwrap().seconds,
            (now - chrono::Duration::hours(2)).timestamp()
        );
        assert_eq!(
            f.created_before.unwrap().seconds,
            now.timestamp() - 90 * 60,
            "17:30 at +01:00 is 16:30 UTC"
        );
        assert_eq!(f.labels["note"], "a=b");
        assert!(!c.is_empty());
        assert!(TaskCriteria::default().is_empty());

        for bad in [
            TaskCriteria {
                since: Some("yesterday".into()),
                ..TaskCriteria::default()
            },
            TaskCriteria {
                labels: vec!["team".into()],
                ..TaskCriteria::default()
            },
            TaskCriteria {
                status: vec!["done".into()],
                ..TaskCriteria::default()
            },
        ] {
            let e = bad.to_filter(now).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        let e = TaskCriteria {
            since: Some("yesterday".into()),
            ..TaskCriteria::default()
        }
        .to_filter(now)
        .unwrap_err();
        assert!(e.to_string().contains("--since"), "{e}");
    }
}
