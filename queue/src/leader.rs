//! Leadership among the masters that share a store (PROTOCOL.md, "Masters"): one lease
//! (holder, epoch, renewals) kept in the store, and a record of every master seen.
//!
//! The lease carries no time. The holder renews it by bumping `renewals`; a candidate that
//! has seen the same (holder, epoch, renewals) for a whole TTL by its own monotonic clock
//! may take it, which raises the epoch. So no master compares its clock with another's:
//! the holder stops acting a margin before a TTL has passed since it *sent* its last
//! successful renewal, and no candidate can take over before a TTL has passed since it
//! *saw* that renewal, which is later. Writes only the leader may make (assign, claim,
//! reports, `lost`) are checked against the epoch the store handle's master last found it
//! leads under, and refused once the epoch has moved on ([`crate::QueueError::Fenced`]).

use chrono::{DateTime, Utc};

/// A master taking part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its id, unique among the masters of one store.
    pub id: String,
    /// Where workers and clients reach it.
    pub url: String,
}

/// The leader lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leading master's id; empty when the last leader resigned.
    pub holder: String,
    /// Its URL.
    pub url: String,
    /// Raised by one at every change of holder; fences the writes of earlier leaders.
    pub epoch: u64,
    /// Raised by one at every renewal: what candidates watch.
    pub renewals: u64,
    /// The store serves one master only and this lease is an OS lock held by the holder's
    /// process (SQLite): it never runs out while that process lives.
    pub sole: bool,
}

impl Lease {
    /// True when `id` holds it.
    pub fn held_by(&self, id: &str) -> bool {
        self.holder == id
    }
}

/// A master as the store last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its URL.
    pub url: String,
    /// Its last campaign (renewal or watch), by its own clock.
    pub last_seen: DateTime<Utc>,
}
