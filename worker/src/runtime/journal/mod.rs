//! Every event of every attempt, in order, until the master acknowledges it
//! (PROTOCOL.md, "Ordered reports").
//!
//! Each attempt's events are numbered 1, 2, 3, … as they happen (start, output, end) and
//! kept until an `Ack{seq}` says the master stored them. After a reconnect everything not
//! acknowledged is sent again, in order, from the first unacknowledged event; the master
//! skips what it already has. Nothing is dropped: past `memory_limit` bytes held in memory,
//! an attempt's newer events go to a spill file under the worker's data dir (the oldest
//! stay in memory, the file holds the rest, so order is kept), and past `spill_limit` bytes
//! on disk `record` refuses and the attempt waits, which slows its output reader. A window
//! caps the bytes sent but not acknowledged, so a master that cannot store (its store is
//! down) is not flooded and holds little in memory.
//!
//! An event sent again (its seq at or below the highest ever sent for its attempt) is
//! counted, for the worker's `cloudai_worker_event_resends_total`
//! ([`Journal::take_resent`]).

mod spill;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use cloudai_queue::{ReportBody, ReportEvent};

use super::state::AttemptKey;
use spill::{spill_append, spill_read, Spill};

/// Where and how much the journal may keep.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Bytes of events held in memory, all attempts together, before spilling to disk.
    pub memory: usize,
    /// Bytes of spill files, all attempts together; past it new events wait.
    pub spill: u64,
    /// Bytes sent but not yet acknowledged, all attempts together.
    pub window: usize,
    /// Directory of the spill files.
    pub dir: PathBuf,
}

/// One attempt's unacknowledged events.
struct Entry {
    next_seq: u64,
    acked: u64,
    /// Highest seq sent on `epoch`.
    sent: u64,
    /// Highest seq ever sent, on any connection: what is sent at or below it is a resend.
    sent_ever: u64,
    epoch: u64,
    /// The oldest unacknowledged events, in seq order.
    mem: VecDeque<ReportEvent>,
    /// Newer events than any in `mem`, in seq order.
    spill: Option<Spill>,
    /// Its end was recorded (`Some(true)`), or it was abandoned and no end will come
    /// (`Some(false)`).
    closed: Option<bool>,
}

impl Entry {
    fn new() -> Self {
        Entry {
            next_seq: 1,
            acked: 0,
            sent: 0,
            sent_ever: 0,
            epoch: 0,
            mem: VecDeque::new(),
            spill: None,
            closed: None,
        }
    }

    fn done(&self) -> bool {
        self.closed.is_some() && self.acked + 1 >= self.next_seq
    }
}

/// Why an event was not recorded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// Memory and spill space are both full: wait for acknowledgements.
    Full,
    /// The attempt has ended or was abandoned: nothing more is recorded for it.
    Closed,
}

/// The journal of a worker.
pub(crate) struct Journal {
    entries: BTreeMap<AttemptKey, Entry>,
    limits: Limits,
    mem_bytes: usize,
    spill_bytes: u64,
    in_flight: usize,
    spilled_once: bool,
    /// Events handed out by `due` again since the last `take_resent`.
    resent: u64,
}

impl Journal {
    /// An empty journal. Spill files of an earlier run in `limits.dir` are removed (a
    /// restarted worker has no attempts).
    pub(crate) fn new(limits: Limits) -> Self {
        if let Ok(dir) = std::fs::read_dir(&limits.dir) {
            for f in dir.flatten() {
                if f.file_name().to_string_lossy().ends_with(".spill") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        Journal {
            entries: BTreeMap::new(),
            limits,
            mem_bytes: 0,
            spill_bytes: 0,
            in_flight: 0,
            spilled_once: false,
            resent: 0,
        }
    }

    /// True when the journal holds anything of this attempt.
    pub(crate) fn knows(&self, key: &AttemptKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Attempts whose end is recorded but not yet acknowledged (for `Register.finished`).
    pub(crate) fn finished(&self) -> Vec<AttemptKey> {
        self.entries
            .iter()
            .filter(|(_, e)| e.closed == Some(true))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Bytes held in memory and on disk.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> (usize, u64) {
        (self.mem_bytes, self.spill_bytes)
    }

    /// Starts the journal of an attempt (a no-op when it has one).
    pub(crate) fn open(&mut self, key: &AttemptKey) {
        self.entries.entry(key.clone()).or_insert_with(Entry::new);
    }

    /// Records the next event of `key`, at `time`; returns its seq. An attempt that was
    /// never opened, was forgotten, or has ended is `Closed`.
    pub(crate) fn record(
        &mut self,
        key: &AttemptKey,
        time: DateTime<Utc>,
        body: ReportBody,
    ) -> Result<u64, RecordError> {
        let Some(entry) = self.entries.get_mut(key) else {
            return Err(RecordError::Closed);
        };
        if entry.closed.is_some() {
            return Err(RecordError::Closed);
        }
        let ends = matches!(body, ReportBody::Finished(_));
        let event = ReportEvent {
            seq: entry.next_seq,
            time,
            body,
        };
        let weight = event.weight();
        // An end always fits: it is tiny and without it the attempt never settles.
        if entry.spill.is_none() && (self.mem_bytes + weight <= self.limits.memory || ends) {
            self.mem_bytes += weight;
            entry.mem.push_back(event);
        } else {
            if self.spill_bytes + weight as u64 > self.limits.spill && !ends {
                return Err(RecordError::Full);
            }
            let written = spill_append(&self.limits.dir, key, entry, &event).map_err(|e| {
                tracing::error!(task_id = %key.0, error = %e, "cannot write the spill file");
                RecordError::Full
            })?;
            if !self.spilled_once {
                self.spilled_once = true;
                tracing::warn!(
                    dir = %self.limits.dir.display(),
                    memory_limit = self.limits.memory,
                    "unacknowledged reports exceed the memory limit: spilling to disk"
                );
            }
            self.spill_bytes += written;
        }
        entry.next_seq += 1;
        if ends {
            entry.closed = Some(true);
        }
        Ok(entry.next_seq - 1)
    }

    /// No end will be recorded for `key` (stopped unreported): it is forgotten once what
    /// it has is acknowledged.
    pub(crate) fn abandon(&mut self, key: &AttemptKey) {
        if let Some(e) = self.entries.get_mut(key) {
            e.closed.get_or_insert(false);
        }
        self.settle(key);
    }

    /// Forgets `key` at once (the master revoked it).
    pub(crate) fn forget(&mut self, key: &AttemptKey) {
        if let Some(e) = self.entries.remove(key) {
            self.release(e);
        }
    }

    /// The master stored every event of `key` up to `seq` (0: all of them, from a master
    /// that only acknowledges ends).
    pub(crate) fn ack(&mut self, key: &AttemptKey, seq: u64) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let seq = if seq == 0 { e.next_seq - 1 } else { seq };
        e.acked = e.acked.max(seq.min(e.next_seq - 1));
        while e.mem.front().is_some_and(|f| f.seq <= e.acked) {
            let f = e.mem.pop_front().expect("checked");
            self.mem_bytes -= f.weight();
            if f.seq <= e.sent {
                self.in_flight = self.in_flight.saturating_sub(f.weight());
            }
        }
        self.settle(key);
    }

    /// Removes `key` once closed and fully acknowledged.
    fn settle(&mut self, key: &AttemptKey) {
        if self.entries.get(key).is_some_and(Entry::done) {
            let e = self.entries.remove(key).expect("checked");
            self.release(e);
        }
    }

    fn release(&mut self, e: Entry) {
        self.mem_bytes -= e.mem.iter().map(ReportEvent::weight).sum::<usize>();
        if let Some(s) = e.spill {
            self.spill_bytes = self.spill_bytes.saturating_sub(s.len - s.read_at);
            let _ = std::fs::remove_file(&s.path);
        }
    }

    /// A new connection: nothing is in flight on it, everything unacknowledged is due.
    pub(crate) fn new_epoch(&mut self, epoch: u64) {
        self.in_flight = 0;
        for e in self.entries.values_mut() {
            e.epoch = epoch;
            e.sent = e.acked;
        }
    }

    /// The events to send now on `epoch`, in order per attempt, within the window.
    pub(crate) fn due(&mut self, epoch: u64) -> Vec<(AttemptKey, ReportEvent)> {
        let mut out = Vec::new();
        let keys: Vec<AttemptKey> = self.entries.keys().cloned().collect();
        for key in keys {
            self.refill(&key);
            let e = self.entries.get_mut(&key).expect("listed");
            if e.epoch != epoch {
                e.epoch = epoch;
                e.sent = e.acked;
            }
            let from = e.sent;
            for ev in e.mem.iter().filter(|ev| ev.seq > from) {
                if self.in_flight >= self.limits.window {
                    return out;
                }
                self.in_flight += ev.weight();
                e.sent = ev.seq;
                if ev.seq <= e.sent_ever {
                    self.resent += 1;
                } else {
                    e.sent_ever = ev.seq;
                }
                out.push((key.clone(), ev.clone()));
            }
        }
        out
    }

    /// How many events `due` handed out again (sent before, on an earlier connection)
    /// since the last call.
    pub(crate) fn take_resent(&mut self) -> u64 {
        std::mem::take(&mut self.resent)
    }

    /// Moves spilled events back into memory while there is room (oldest first).
    fn refill(&mut self, key: &AttemptKey) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let Some(spill) = e.spill.as_mut() else {
            return;
        };
        while self.mem_bytes < self.limits.memory / 2 || e.mem.is_empty() {
            match spill_read(spill) {
                Ok(Some((ev, len))) => {
                    self.spill_bytes = self.spill_bytes.saturating_sub(len);
                    self.mem_bytes += ev.weight();
                    e.mem.push_back(ev);
                }
                Ok(None) => {
                    let _ = std::fs::remove_file(&spill.path);
                    e.spill = None;
                    return;
                }
                Err(err) => {
                    tracing::error!(task_id = %key.0, error = %err, "cannot read the spill file");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudai_queue::{AttemptEnd, LogStream};
    use std::path::Path;

    fn journal(memory: usize, window: usize, dir: &Path) -> Journal {
        Journal::new(Limits {
            memory,
            spill: 1 << 20,
            window,
            dir: dir.to_path_buf(),
        })
    }

    fn out(n: usize) -> ReportBody {
        ReportBody::Output {
            stream: LogStream::Stdout,
            data: vec![b'x'; n],
        }
    }

    fn seqs(due: &[(AttemptKey, ReportEvent)]) -> Vec<u64> {
        due.iter().map(|(_, e)| e.seq).collect()
    }

    #[test]
    fn events_are_numbered_sent_once_and_again_after_a_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(1 << 20, 1 << 20, dir.path());
        let k: AttemptKey = ("t".into(), 1);
        let now = Utc::now();
        assert_eq!(
            j.record(&k, now, out(1)),
            Err(RecordError::Closed),
            "not opened"
        );
        j.open(&k);
        assert_eq!(j.record(&k, now, out(1)), Ok(1));
        assert_eq!(j.record(&k, now, out(1)), Ok(2));
        assert_eq!(seqs(&j.due(1)), [1, 2]);
        assert!(j.due(1).is_empty(), "sent once per connection");
        assert_eq!(j.take_resent(), 0, "first sends are no resends");
        j.ack(&k, 1);
        j.new_epoch(2);
        assert_eq!(
            seqs(&j.due(2)),
            [2],
            "a reconnect re-sends what is not acked"
        );
        assert_eq!(j.take_resent(), 1, "seq 2 went out again");
        assert_eq!(j.take_resent(), 0, "taken");
        j.record(&k, now, ReportBody::Finished(AttemptEnd::Exited(0)))
            .unwrap();
        assert_eq!(j.finished(), vec![k.clone()]);
        assert_eq!(
            j.record(&k, now, out(1)),
            Err(RecordError::Closed),
            "nothing after the end"
        );
        assert_eq!(seqs(&j.due(2)), [3]);
        assert_eq!(j.take_resent(), 0, "a new event is no resend");
        j.ack(&k, 3);
        assert!(!j.knows(&k), "forgotten once its end is acked");
        assert_eq!(j.bytes(), (0, 0));
    }

    #[test]
    fn the_window_holds_back_what_the_master_has_not_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(1 << 20, 100, dir.path());
        let k: AttemptKey = ("t".into(), 1);
        j.open(&k);
        for _ in 0..5 {
            j.record(&k, Utc::now(), out(40)).unwrap();
        }
        assert_eq!(
            seqs(&j.due(1)),
            [1, 2],
            "72 bytes each: two fill the window"
        );
        j.ack(&k, 2);
        assert_eq!(seqs(&j.due(1)), [3, 4]);
        j.ack(&k, 4);
        assert_eq!(seqs(&j.due(1)), [5]);
    }

    #[test]
    fn past_the_memory_limit_events_spill_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(200, 1 << 20, dir.path());
        let (a, b): (AttemptKey, AttemptKey) = (("a".into(), 1), ("b".into(), 2));
        let now = Utc::now();
        j.open(&a);
        j.open(&b);
        for i in 0..20 {
            j.record(if i % 2 == 0 { &a } else { &b }, now, out(50))
                .unwrap();
        }
        let (mem, disk) = j.bytes();
        assert!(mem <= 200 && disk > 0, "mem {mem}, disk {disk}");
        j.record(&a, now, ReportBody::Finished(AttemptEnd::Exited(0)))
            .unwrap();
        let mut got: BTreeMap<AttemptKey, Vec<u64>> = BTreeMap::new();
        loop {
            let due = j.due(1);
            if due.is_empty() {
                break;
            }
            for (k, e) in due {
                got.entry(k.clone()).or_default().push(e.seq);
                j.ack(&k, e.seq);
            }
        }
        assert_eq!(got[&a], (1..=11).collect::<Vec<_>>());
        assert_eq!(got[&b], (1..=10).collect::<Vec<_>>());
        assert!(!j.knows(&a), "a ended and was acked");
        assert_eq!(j.bytes().1, 0, "spill files are gone");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_journal_refuses_until_acks_make_room_and_ends_always_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::new(Limits {
            memory: 100,
            spill: 100,
            window: 1 << 20,
            dir: dir.path().to_path_buf(),
        });
        let k: AttemptKey = ("t".into(), 1);
        j.open(&k);
        let mut n = 0;
        while j.record(&k, Utc::now(), out(30)).is_ok() {
            n += 1;
        }
        assert!((2..10).contains(&n), "{n}");
        assert_eq!(j.record(&k, Utc::now(), out(30)), Err(RecordError::Full));
        assert!(j
            .record(&k, Utc::now(), ReportBody::Finished(AttemptEnd::Cancelled))
            .is_ok());
    }

    #[test]
    fn abandoned_attempts_are_forgotten_once_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(1 << 20, 1 << 20, dir.path());
        let k: AttemptKey = ("t".into(), 1);
        j.open(&k);
        j.record(&k, Utc::now(), out(1)).unwrap();
        j.abandon(&k);
        assert!(j.knows(&k) && j.finished().is_empty());
        j.ack(&k, 1);
        assert!(!j.knows(&k));
        j.open(&k);
        j.record(&k, Utc::now(), out(1)).unwrap();
        j.forget(&k);
        assert!(!j.knows(&k));
        assert_eq!(
            j.record(&k, Utc::now(), out(1)),
            Err(RecordError::Closed),
            "a forgotten attempt records nothing more"
        );
        assert_eq!(j.bytes(), (0, 0));
    }
}
