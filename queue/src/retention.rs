//! How much of a task's output is kept: the one rule both backends apply, so that they
//! keep the same bytes.
//!
//! A task keeps its newest `max_log_bytes_per_task` bytes of output. When an append takes
//! it over, whole chunks are dropped oldest first, and the oldest chunk that must stay in
//! part loses its head, so exactly `cap` bytes stay. The seq-0 `system` chunk (the marker,
//! not counted) then says how many bytes were dropped in total.

/// What to do with the oldest chunk still kept, while the task is over its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Delete it.
    Drop,
    /// Keep it, without its first `n` bytes.
    Cut(u64),
}

/// A task's kept and dropped byte counts while output is being trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Bytes of output kept.
    pub kept: u64,
    /// Bytes dropped so far, all appends together.
    pub dropped: u64,
    cap: u64,
}

impl Budget {
    /// Counters after an append of `added` bytes on top of `kept` and `dropped`.
    pub(crate) fn new(kept: u64, dropped: u64, added: u64, cap: u64) -> Self {
        Budget {
            kept: kept.saturating_add(added),
            dropped,
            cap,
        }
    }

    /// True while more is kept than the cap allows.
    pub(crate) fn over(&self) -> bool {
        self.kept > self.cap
    }

    /// The fate of the oldest chunk still kept (`len` bytes), accounted for. Call only
    /// while [`Budget::over`].
    pub(crate) fn take(&mut self, len: u64) -> Fate {
        let excess = self.kept - self.cap;
        let gone = excess.min(len);
        self.kept -= gone;
        self.dropped += gone;
        if gone == len {
            Fate::Drop
        } else {
            Fate::Cut(gone)
        }
    }
}

/// The text of the seq-0 marker chunk that stands in for `dropped_bytes` of older output.
pub fn dropped_marker(dropped_bytes: u64) -> String {
    format!("[cloudai: {dropped_bytes} bytes of older output dropped]")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies the rule to chunk sizes (oldest first); returns what is kept of each.
    fn kept(sizes: &[u64], cap: u64) -> (Vec<u64>, u64) {
        let mut b = Budget::new(0, 0, sizes.iter().sum(), cap);
        let mut out = sizes.to_vec();
        let mut i = 0;
        while b.over() {
            match b.take(out[i]) {
                Fate::Drop => out[i] = 0,
                Fate::Cut(n) => out[i] -= n,
            }
            i += 1;
        }
        (out, b.dropped)
    }

    #[test]
    fn oldest_whole_chunks_go_first() {
        assert_eq!(kept(&[4, 4, 4], 8), (vec![0, 4, 4], 4));
        assert_eq!(kept(&[4, 4, 4], 12), (vec![4, 4, 4], 0));
        assert_eq!(kept(&[4, 4, 4], 5), (vec![0, 1, 4], 7));
    }

    #[test]
    fn a_chunk_larger_than_what_must_go_loses_only_its_head() {
        // 10 over a cap of 6: the oldest chunk (8 bytes) keeps its last 4.
        assert_eq!(kept(&[8, 2], 6), (vec![4, 2], 4));
        // The newest chunk alone over the cap keeps exactly its last `cap` bytes.
        assert_eq!(kept(&[3, 100], 10), (vec![0, 10], 93));
        assert_eq!(kept(&[100], 10), (vec![10], 90));
    }

    #[test]
    fn the_marker_names_every_byte_dropped() {
        let mut b = Budget::new(6, 90, 4, 8);
        assert!(b.over());
        assert_eq!(b.take(6), Fate::Cut(2));
        assert!(!b.over());
        assert_eq!((b.kept, b.dropped), (8, 92));
        assert_eq!(
            dropped_marker(92),
            "[cloudai: 92 bytes of older output dropped]"
        );
    }
}
