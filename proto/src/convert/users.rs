//! Users' quotas on the wire.

use crate::pb;
use cloudai_queue as q;

impl From<q::Quota> for pb::Quota {
    fn from(v: q::Quota) -> Self {
        pb::Quota {
            cpu_millis: v.cpu_millis,
            memory_bytes: v.memory_bytes,
            gpus: v.gpus,
            running: v.running,
        }
    }
}

impl From<pb::Quota> for q::Quota {
    fn from(v: pb::Quota) -> Self {
        q::Quota {
            cpu_millis: v.cpu_millis,
            memory_bytes: v.memory_bytes,
            gpus: v.gpus,
            running: v.running,
        }
    }
}

/// A quota as a request gives it: unset, or no limit set, is none.
pub fn quota_of(v: Option<pb::Quota>) -> Option<q::Quota> {
    v.map(q::Quota::from).and_then(q::Quota::limited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_round_trip_and_an_empty_one_is_none() {
        let full = q::Quota {
            cpu_millis: Some(16_000),
            memory_bytes: Some(64 << 30),
            gpus: Some(0),
            running: Some(100),
        };
        assert_eq!(quota_of(Some(pb::Quota::from(full))), Some(full));
        assert_eq!(quota_of(Some(pb::Quota::default())), None);
        assert_eq!(quota_of(None), None);
        // A limit of zero is a limit (no GPUs at all), not "unset".
        let no_gpus = q::Quota {
            gpus: Some(0),
            ..q::Quota::default()
        };
        assert_eq!(quota_of(Some(no_gpus.into())), Some(no_gpus));
    }
}
