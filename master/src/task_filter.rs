//! The search criteria of `ListTasks` and of the bulk actions' `TaskFilter`, checked
//! and turned into a [`TaskQuery`] in one place, so a listing and a bulk cancel mean the
//! same tasks by the same words.

use cloudai_proto::{convert, pb};
use cloudai_queue::{TaskQuery, TaskStatus};
use tonic::Status;

use crate::error::convert_status;

/// Longest free-text search accepted.
pub const MAX_TEXT: usize = 256;

/// `f` as a query (no page yet). Empty strings count as absent.
pub fn query_of(f: pb::TaskFilter) -> Result<TaskQuery, Status> {
    let keep = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let statuses = f
        .statuses
        .iter()
        .map(|s| convert::task_status("statuses", *s))
        .collect::<Result<Vec<TaskStatus>, _>>()
        .map_err(convert_status)?;
    let created_after = f
        .created_after
        .as_ref()
        .map(|t| convert::from_timestamp("created_after", t))
        .transpose()
        .map_err(convert_status)?;
    let created_before = f
        .created_before
        .as_ref()
        .map(|t| convert::from_timestamp("created_before", t))
        .transpose()
        .map_err(convert_status)?;
    if let (Some(a), Some(b)) = (created_after, created_before) {
        if a >= b {
            return Err(Status::invalid_argument(format!(
                "created_after ({a}) must be before created_before ({b})"
            )));
        }
    }
    let text = keep(f.text);
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
        return Err(Status::invalid_argument(format!(
            "the search text is longer than {MAX_TEXT} characters"
        )));
    }
    if let Some(k) = f.labels.keys().find(|k| k.trim().is_empty()) {
        return Err(Status::invalid_argument(format!(
            "label filter {k:?}={:?} has an empty key",
            f.labels[k]
        )));
    }
    Ok(TaskQuery {
        statuses,
        worker_id: keep(f.worker_id),
        submitted_by: keep(f.submitted_by),
        image: keep(f.image),
        labels: f.labels.into_iter().collect(),
        created_after,
        created_before,
        text,
        array: keep(f.array),
        ..TaskQuery::default()
    })
}

/// True when `q` names no task in particular (it would match every task).
pub fn is_empty(q: &TaskQuery) -> bool {
    q.statuses.is_empty()
        && q.worker_id.is_none()
        && q.submitted_by.is_none()
        && q.image.is_none()
        && q.labels.is_empty()
        && q.created_after.is_none()
        && q.created_before.is_none()
        && q.text.is_none()
        && q.array.is_none()
}

/// The criteria of a `ListTasks` request, as a filter.
pub fn filter_of(r: &pb::ListTasksRequest) -> pb::TaskFilter {
    pb::TaskFilter {
        statuses: r.statuses.clone(),
        worker_id: r.worker_id.clone(),
        submitted_by: r.submitted_by.clone(),
        image: r.image.clone(),
        labels: r.labels.clone(),
        created_after: r.created_after,
        created_before: r.created_before,
        text: r.text.clone(),
        array: r.array.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_criteria_are_absent_and_bad_ones_are_named() {
        let q = query_of(pb::TaskFilter {
            image: Some("  ".into()),
            text: Some("".into()),
            worker_id: Some(" w1 ".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((q.image, q.text), (None, None));
        assert_eq!(q.worker_id.as_deref(), Some("w1"));
        assert!(is_empty(&query_of(pb::TaskFilter::default()).unwrap()));

        let ts = |s| prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        };
        let e = query_of(pb::TaskFilter {
            created_after: Some(ts(20)),
            created_before: Some(ts(10)),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("created_after"), "{e:?}");
        let e = query_of(pb::TaskFilter {
            text: Some("x".repeat(MAX_TEXT + 1)),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("longer than"), "{e:?}");
        let e = query_of(pb::TaskFilter {
            labels: [(" ".to_string(), "v".to_string())].into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("empty key"), "{e:?}");
        let e = query_of(pb::TaskFilter {
            statuses: vec![99],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
}
