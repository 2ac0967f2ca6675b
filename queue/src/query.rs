//! [`TaskQuery`]: which tasks a listing, a search or a bulk action means, and the page.
//! [`TaskQuery::matches`] is the rule in plain code; each backend translates the same
//! criteria into its own query (SQL, a MongoDB filter), and the conformance suite checks
//! that what they return is what `matches` says.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::model::{Task, TaskId, TaskStatus};

/// Page size when a query gives none.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Filter and page for listing tasks: newest first, or oldest first with `oldest_first`.
/// Every criterion given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only these statuses; empty means all.
    pub statuses: Vec<TaskStatus>,
    /// Only tasks whose current or last attempt is on this worker.
    pub worker_id: Option<String>,
    /// Only tasks submitted by this user (`Task::submitted_by`).
    pub submitted_by: Option<String>,
    /// Only this image: exact, or a prefix when it ends in `*` (`registry.example/ml/*`).
    pub image: Option<String>,
    /// Only tasks carrying every one of these labels with these values.
    pub labels: BTreeMap<String, String>,
    /// Only tasks created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only tasks created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only tasks whose id, image or command contains this text, ignoring ASCII case.
    pub text: Option<String>,
    /// Only tasks that run after this one (`TaskSpec::after` names it).
    pub depends_on: Option<TaskId>,
    /// Only the elements of this array (`TaskSpec::array`).
    pub array: Option<String>,
    /// Oldest first (ascending ids) instead of newest first.
    pub oldest_first: bool,
    /// At most this many; 0 means [`DEFAULT_LIST_LIMIT`].
    pub limit: usize,
    /// The cursor of the previous page: only tasks past this id in the listing's order
    /// (older ones newest first, newer ones with `oldest_first`).
    pub before: Option<TaskId>,
}

impl TaskQuery {
    /// The page size this query asks for.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n,
        }
    }

    /// The image criterion as a prefix (`Some` when it ends in `*`).
    pub fn image_prefix(&self) -> Option<&str> {
        self.image.as_deref().and_then(|p| p.strip_suffix('*'))
    }

    /// True when `t` meets every criterion (the page's cursor included).
    pub fn matches(&self, t: &Task) -> bool {
        let past_cursor = match (self.before, self.oldest_first) {
            (None, _) => true,
            (Some(c), false) => t.id < c,
            (Some(c), true) => t.id > c,
        };
        past_cursor
            && (self.statuses.is_empty() || self.statuses.contains(&t.status))
            && self
                .worker_id
                .as_deref()
                .is_none_or(|w| t.worker_id() == Some(w))
            && self
                .submitted_by
                .as_deref()
                .is_none_or(|s| t.submitted_by.as_deref() == Some(s))
            && self.image_matches(&t.spec.image)
            && self
                .labels
                .iter()
                .all(|(k, v)| t.spec.labels.get(k) == Some(v))
            && self.created_after.is_none_or(|a| t.created_at >= a)
            && self.created_before.is_none_or(|b| t.created_at < b)
            && self.text.as_deref().is_none_or(|q| text_matches(t, q))
            && self
                .depends_on
                .is_none_or(|p| t.spec.after.iter().any(|d| d.task == p))
            && self
                .array
                .as_deref()
                .is_none_or(|a| t.spec.array.as_ref().is_some_and(|m| m.id == a))
    }

    fn image_matches(&self, image: &str) -> bool {
        match (self.image_prefix(), self.image.as_deref()) {
            (Some(prefix), _) => image.starts_with(prefix),
            (None, Some(exact)) => image == exact,
            (None, None) => true,
        }
    }
}

/// The free-text rule: `q` within the id, the image or one of the command's words.
fn text_matches(t: &Task, q: &str) -> bool {
    let q = q.to_ascii_lowercase();
    let has = |s: &str| s.to_ascii_lowercase().contains(&q);
    has(&t.id.to_string()) || has(&t.spec.image) || t.spec.command.iter().any(|c| has(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskSpec;

    fn task(image: &str, command: &[&str], labels: &[(&str, &str)]) -> Task {
        let mut spec = TaskSpec::new(image);
        spec.command = command.iter().map(|s| s.to_string()).collect();
        spec.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::lifecycle::new_task(
            crate::model::NewTask {
                spec,
                submitted_by: None,
            },
            Utc::now(),
        )
    }

    #[test]
    fn images_match_exactly_or_by_prefix() {
        let t = task("registry.example/ml/train:1", &[], &[]);
        let q = |i: &str| TaskQuery {
            image: Some(i.into()),
            ..TaskQuery::default()
        };
        assert!(q("registry.example/ml/*").matches(&t));
        assert!(q("registry.example/ml/train:1").matches(&t));
        assert!(!q("registry.example/ml").matches(&t));
        assert!(!q("registry.example/web/*").matches(&t));
    }

    #[test]
    fn every_label_must_hold() {
        let t = task("busybox", &[], &[("team", "ml"), ("env", "prod")]);
        let q = |l: &[(&str, &str)]| TaskQuery {
            labels: l
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..TaskQuery::default()
        };
        assert!(q(&[("team", "ml")]).matches(&t));
        assert!(q(&[("team", "ml"), ("env", "prod")]).matches(&t));
        assert!(!q(&[("team", "ml"), ("env", "dev")]).matches(&t));
        assert!(!q(&[("owner", "ml")]).matches(&t));
    }

    #[test]
    fn text_searches_id_image_and_command_ignoring_case() {
        let t = task("busybox:1.36", &["sh", "-c", "echo Hello-World"], &[]);
        let q = |s: &str| TaskQuery {
            text: Some(s.into()),
            ..TaskQuery::default()
        };
        assert!(q("hello-world").matches(&t));
        assert!(q("BUSYBOX").matches(&t));
        assert!(q(&t.id.to_string()[..8]).matches(&t));
        assert!(!q("goodbye").matches(&t));
    }

    #[test]
    fn creation_bounds_are_inclusive_then_exclusive_and_cursors_follow_the_order() {
        let t = task("busybox", &[], &[]);
        let at = t.created_at;
        let later = at + chrono::Duration::seconds(1);
        let q = TaskQuery {
            created_after: Some(at),
            created_before: Some(later),
            ..TaskQuery::default()
        };
        assert!(q.matches(&t));
        assert!(!TaskQuery {
            created_before: Some(at),
            ..q.clone()
        }
        .matches(&t));
        let newer = TaskId::new();
        assert!(TaskQuery {
            before: Some(newer),
            ..TaskQuery::default()
        }
        .matches(&t));
        assert!(!TaskQuery {
            before: Some(newer),
            oldest_first: true,
            ..TaskQuery::default()
        }
        .matches(&t));
    }
}
