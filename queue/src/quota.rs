//! Per-user quotas: the most a submitter's tasks may hold at once while they run. A task
//! over its submitter's quota is not refused: it waits (reason `Quota`) until enough of
//! the submitter's tasks have ended. The dispatcher applies them (see PLACEMENT.md).

use serde::{Deserialize, Serialize};

use crate::model::Resources;

/// Limits on what one user's assigned and running tasks reserve together. A limit that is
/// `None` is unlimited; a user without a quota has every limit unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quota {
    /// CPU in thousandths of a core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Tasks assigned or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
}

/// What one user's live tasks hold now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Their reservations, summed.
    pub reserved: Resources,
    /// How many there are.
    pub running: u32,
}

impl Usage {
    /// `self` with one more task reserving `r`.
    pub fn plus(&self, r: &Resources) -> Usage {
        Usage {
            reserved: self.reserved.saturating_add(r),
            running: self.running.saturating_add(1),
        }
    }

    /// `self` without one task reserving `r`.
    pub fn minus(&self, r: &Resources) -> Usage {
        Usage {
            reserved: self.reserved.saturating_sub(r),
            running: self.running.saturating_sub(1),
        }
    }
}

/// The first limit a task would pass: which one, the limit, and what the user would hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverQuota {
    /// `cpu`, `memory`, `gpus` or `running`.
    pub resource: &'static str,
    /// The quota's limit.
    pub limit: u64,
    /// What the user's tasks would hold with this one.
    pub would_hold: u64,
}

impl std::fmt::Display for OverQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "its submitter's quota allows {} {}; with this task its tasks would hold {}",
            self.limit, self.resource, self.would_hold
        )
    }
}

impl Quota {
    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Quota::default()
    }

    /// `self`, or `None` when it sets no limit (such a quota is no quota).
    pub fn limited(self) -> Option<Quota> {
        Some(self).filter(|q| !q.is_unlimited())
    }

    /// Whether one more task reserving `ask` fits beside `used`: the first limit it
    /// would pass, if any. Pure.
    pub fn check(&self, used: &Usage, ask: &Resources) -> Result<(), OverQuota> {
        let with = used.plus(ask);
        let limits = [
            ("cpu", self.cpu_millis, with.reserved.cpu_millis),
            ("memory", self.memory_bytes, with.reserved.memory_bytes),
            (
                "gpus",
                self.gpus.map(u64::from),
                u64::from(with.reserved.gpus),
            ),
            (
                "running",
                self.running.map(u64::from),
                u64::from(with.running),
            ),
        ];
        for (resource, limit, would_hold) in limits {
            if let Some(limit) = limit.filter(|l| would_hold > *l) {
                return Err(OverQuota {
                    resource,
                    limit,
                    would_hold,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: u64, mem: u64, gpus: u32) -> Resources {
        Resources {
            cpu_millis: cpu,
            memory_bytes: mem,
            gpus,
            disk_bytes: 0,
        }
    }

    #[test]
    fn unlimited_takes_anything() {
        let q = Quota::default();
        assert!(q.is_unlimited());
        let used = Usage {
            reserved: res(u64::MAX, u64::MAX, u32::MAX),
            running: u32::MAX,
        };
        assert_eq!(q.check(&used, &res(1000, 1, 1)), Ok(()));
    }

    #[test]
    fn each_limit_is_checked_with_the_new_task_included() {
        let q = Quota {
            cpu_millis: Some(2000),
            memory_bytes: Some(100),
            gpus: Some(1),
            running: Some(3),
        };
        let used = Usage {
            reserved: res(1000, 50, 0),
            running: 2,
        };
        // Exactly at every limit is allowed.
        assert_eq!(q.check(&used, &res(1000, 50, 1)), Ok(()));
        let over = |ask: Resources, used: Usage| q.check(&used, &ask).unwrap_err();
        assert_eq!(over(res(1001, 0, 0), used).resource, "cpu");
        assert_eq!(over(res(1001, 0, 0), used).would_hold, 2001);
        assert_eq!(over(res(0, 51, 0), used).resource, "memory");
        assert_eq!(over(res(0, 0, 2), used).resource, "gpus");
        let three = Usage { running: 3, ..used };
        let e = over(res(0, 0, 0), three);
        assert_eq!((e.resource, e.limit, e.would_hold), ("running", 3, 4));
        assert!(e.to_string().contains("allows 3 running"), "{e}");
    }

    #[test]
    fn usage_adds_and_removes_one_task() {
        let u = Usage::default()
            .plus(&res(500, 10, 1))
            .plus(&res(500, 10, 0));
        assert_eq!(u.running, 2);
        assert_eq!(u.reserved, res(1000, 20, 1));
        let back = u.minus(&res(500, 10, 1)).minus(&res(500, 10, 0));
        assert_eq!(back, Usage::default());
    }

    #[test]
    fn serde_omits_unset_limits() {
        let q = Quota {
            running: Some(5),
            ..Quota::default()
        };
        let s = serde_json::to_string(&q).unwrap();
        assert_eq!(s, r#"{"running":5}"#);
        assert_eq!(serde_json::from_str::<Quota>(&s).unwrap(), q);
        assert_eq!(
            serde_json::from_str::<Quota>("{}").unwrap(),
            Quota::default()
        );
    }
}
