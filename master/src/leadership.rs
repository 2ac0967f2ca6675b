//! Leadership among the masters that share a store (PROTOCOL.md, "Masters"). Every
//! master campaigns every `--leader-renew` (1 s): the leader renews its lease, the others
//! watch it and take it once it has gone a whole `--leader-ttl` (5 s) unrenewed, by their
//! own clocks. The leader does the leader's work (dispatching, health, the workers'
//! streams) only while its lease holds by its own clock: from the send of its last
//! successful renewal, a TTL less a margin. It stops as soon as a campaign finds another
//! holder, or its lease runs out while the store cannot be reached, and it says so.
//!
//! The pure part ([`Watch`], [`validity`]) is unit-tested; [`run`] is the loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudai_queue::{Candidate, Lease, QueueError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::shared::Shared;
use crate::{dispatcher, registry};

/// What a master is to the group right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// It has not campaigned yet.
    #[default]
    Starting,
    /// It leads under this epoch, until `until` by its own clock.
    Leader {
        /// The lease's epoch.
        epoch: u64,
        /// The lease holds until then (the margin already taken off).
        until: Instant,
    },
    /// Another master leads, when the lease names one.
    Standby {
        /// The leader's id and URL.
        leader: Option<(String, String)>,
    },
}

impl Role {
    /// True while this master leads and its lease holds at `now`.
    pub fn leads_at(&self, now: Instant) -> bool {
        matches!(self, Role::Leader { until, .. } if now < *until)
    }

    /// The leader's URL, as far as this master knows (itself, when it leads).
    pub fn leader_url<'a>(&'a self, own: &'a str) -> Option<&'a str> {
        match self {
            Role::Leader { .. } => Some(own),
            Role::Standby { leader } => leader.as_ref().map(|(_, u)| u.as_str()),
            Role::Starting => None,
        }
    }
}

/// How long a lease renewed by a campaign sent at `sent` holds for its holder: a TTL, less
/// a fifth of it as the margin for clock-rate differences and the store's latency; for a
/// store only one master can use (its lease is an OS lock), as long as the process lives.
pub fn validity(lease: &Lease, sent: Instant, ttl: Duration) -> Instant {
    if lease.sole {
        sent + Duration::from_secs(100 * 365 * 24 * 3600)
    } else {
        sent + ttl - ttl / 5
    }
}

/// A standby's view of someone else's lease: when it first saw it as it is now.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    seen: Option<(Lease, Instant)>,
}

impl Watch {
    /// The lease a campaign answered, received at `at`. Returns the lease to take over
    /// in the next campaign: the same one, unrenewed, for a whole `ttl` since it was first
    /// seen so (seeing it means its last renewal was made before then).
    pub fn observe(&mut self, lease: &Lease, at: Instant, ttl: Duration) -> Option<Lease> {
        match &self.seen {
            Some((l, first)) if l == lease => (at.duration_since(*first) >= ttl).then(|| l.clone()),
            _ => {
                self.seen = Some((lease.clone(), at));
                None
            }
        }
    }

    /// Forgets what it saw (this master leads now, or the lease changed hands).
    pub fn reset(&mut self) {
        self.seen = None;
    }
}

/// The leader's background work, stopped at the end of its term.
#[derive(Default)]
struct Duties(Vec<JoinHandle<()>>);

impl Duties {
    fn start(shared: &Arc<Shared>) -> Duties {
        Duties(vec![
            tokio::spawn(dispatcher::run(shared.clone())),
            tokio::spawn(registry::monitor(shared.clone())),
            tokio::spawn(registry::persist_workers(shared.clone())),
            tokio::spawn(registry::watch_store(shared.clone())),
            tokio::spawn(crate::workflow::run(shared.clone())),
            tokio::spawn(crate::schedules::run(shared.clone())),
        ])
    }

    fn stop(&mut self) {
        for d in self.0.drain(..) {
            d.abort();
        }
    }

    /// At shutdown: each duty returns by itself (it watches for shutdown); a pass in
    /// progress gets a moment to finish its write.
    async fn finish(mut self) {
        for d in self.0.drain(..) {
            let abort = d.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), d)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// One campaign, bounded so that a store that does not answer cannot hold it past the
/// point where the lease must be given up anyway.
async fn campaign(
    shared: &Shared,
    me: &Candidate,
    held: Option<u64>,
    takeover: Option<&Lease>,
) -> Result<Lease, QueueError> {
    let limit = shared.config.leader_ttl / 2;
    match tokio::time::timeout(limit, shared.store.campaign(me, held, takeover, Utc::now())).await {
        Ok(r) => r,
        Err(_) => Err(QueueError::Backend {
            backend: shared.store.backend_name(),
            message: format!("no answer to the campaign within {} ms", limit.as_millis()),
            retryable: true,
        }),
    }
}

/// The first campaign, at start-up: fails for a store this master may not use (a SQLite
/// file another master holds), so that the process says so and exits.
pub async fn first(shared: &Arc<Shared>) -> Result<(), QueueError> {
    let me = shared.candidate();
    let sent = Instant::now();
    let lease = shared.store.campaign(&me, None, None, Utc::now()).await?;
    if lease.held_by(&me.id) {
        // The view first: workers are accepted only once it is rebuilt.
        registry::recover(shared).await?;
        tracing::info!(epoch = lease.epoch, master_id = %me.id, "leading");
        shared.set_role(Role::Leader {
            epoch: lease.epoch,
            until: validity(&lease, sent, shared.config.leader_ttl),
        });
    } else {
        let leader = (!lease.holder.is_empty()).then(|| (lease.holder.clone(), lease.url.clone()));
        tracing::info!(leader = ?leader, epoch = lease.epoch, master_id = %me.id, "standing by");
        shared.set_role(Role::Standby { leader });
    }
    Ok(())
}

/// Resolves at `until`, or never when there is none.
async fn deadline(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Campaigns until shutdown, starting and stopping the leader's duties; on shutdown the
/// leader lets its duties finish, then resigns, so that another master takes over at once.
pub async fn run(shared: Arc<Shared>) {
    let me = shared.candidate();
    let mut watch = Watch::default();
    let mut duties = Duties::default();
    if shared.role().leads_at(Instant::now()) {
        duties = Duties::start(&shared);
    }
    let mut tick = tokio::time::interval(shared.config.leader_renew);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let role = shared.role();
        let (held, until) = match role {
            Role::Leader { epoch, until } => (Some(epoch), Some(until)),
            _ => (None, None),
        };
        // The lease runs out by this master's clock whatever the store does: a campaign
        // that hangs (the store cut off) cannot keep it leading past that moment.
        tokio::select! {
            _ = tick.tick() => {}
            _ = vacancy(&shared, &mut watch), if held.is_none() => {}
            _ = deadline(until) => {
                lease_ran_out(&shared, &mut duties, "no renewal succeeded in time");
                continue;
            }
            _ = shared.until_shutdown() => break,
        }
        let takeover = watch.seen.as_ref().and_then(|(l, first)| {
            (first.elapsed() >= shared.config.leader_ttl).then(|| l.clone())
        });
        let sent = Instant::now();
        let outcome = tokio::select! {
            r = campaign(&shared, &me, held, takeover.as_ref()) => r,
            _ = deadline(until) => {
                lease_ran_out(&shared, &mut duties, "the store did not answer the renewal in time");
                continue;
            }
        };
        if held.is_some() {
            let result = match &outcome {
                Ok(l) if l.holder == me.id => "ok",
                Ok(_) => "lost",
                Err(_) => "error",
            };
            let label = crate::metrics::ReasonLabel {
                reason: result.to_string(),
            };
            shared.metrics.lease_renewals.get_or_create(&label).inc();
        }
        match outcome {
            Ok(lease) => settle(&shared, &me, lease, sent, &mut watch, &mut duties).await,
            Err(e) if held.is_some() => {
                tracing::warn!(error = %e, "could not renew the leader lease; still leading until it runs out")
            }
            Err(e) => tracing::warn!(error = %e, "could not campaign for leadership"),
        }
    }
    duties.finish().await;
    if let Role::Leader { epoch, .. } = shared.role() {
        shared.store.stand_down();
        match shared.store.resign(&me.id, epoch).await {
            Ok(()) => tracing::info!(
                epoch,
                "resigned the leader lease: another master takes over"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not resign the leader lease; it runs out by itself")
            }
        }
    }
}

/// How often a standby reads the lease between campaigns, to take it as soon as it is
/// resigned or has gone a whole TTL unrenewed (a clean hand-over takes about this long).
pub const PEEK: Duration = Duration::from_millis(200);

/// A standby's watch between campaigns: resolves when the lease is vacant, missing, or
/// due for a takeover, so that the campaign comes at once rather than at the next tick.
async fn vacancy(shared: &Shared, watch: &mut Watch) {
    loop {
        tokio::time::sleep(PEEK).await;
        match shared.store.lease().await {
            Ok(Some(l)) if l.holder.is_empty() => return,
            Ok(Some(l)) => {
                if watch
                    .observe(&l, Instant::now(), shared.config.leader_ttl)
                    .is_some()
                {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => tracing::debug!(error = %e, "could not read the leader lease"),
        }
    }
}

/// The lease ran out by this master's clock before a renewal came back.
fn lease_ran_out(shared: &Shared, duties: &mut Duties, why: &str) {
    tracing::error!(
        why,
        "the leader lease ran out: stopped dispatching and acknowledging workers; another master may lead"
    );
    step_down(shared, duties, None);
}

/// Acts on what a campaign found.
async fn settle(
    shared: &Arc<Shared>,
    me: &Candidate,
    lease: Lease,
    sent: Instant,
    watch: &mut Watch,
    duties: &mut Duties,
) {
    let role = shared.role();
    if lease.held_by(&me.id) {
        watch.reset();
        let until = validity(&lease, sent, shared.config.leader_ttl);
        let renewed = matches!(role, Role::Leader { epoch, .. } if epoch == lease.epoch);
        if !renewed {
            tracing::info!(epoch = lease.epoch, master_id = %me.id, "took the lead: rebuilding the view from the store");
            duties.stop();
            shared.forget_cluster();
            // Workers are accepted once the view is rebuilt; until then they are told to
            // come back (the lease already names this master).
            loop {
                match registry::recover(shared).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not rebuild the view; trying again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if shared.shutting_down() || Instant::now() >= until {
                    tracing::warn!(
                        "the lease ran out while rebuilding the view; campaigning again"
                    );
                    return;
                }
            }
            tracing::info!(epoch = lease.epoch, master_id = %me.id, "leading");
            shared.set_role(Role::Leader {
                epoch: lease.epoch,
                until,
            });
            *duties = Duties::start(shared);
        }
        shared.set_role(Role::Leader {
            epoch: lease.epoch,
            until,
        });
        return;
    }
    if matches!(role, Role::Leader { .. }) {
        tracing::warn!(holder = %lease.holder, epoch = lease.epoch,
            "another master took the lead: stopped dispatching and acknowledging workers");
        step_down(shared, duties, Some(&lease));
    } else {
        let leader = (!lease.holder.is_empty()).then(|| (lease.holder.clone(), lease.url.clone()));
        if role
            != (Role::Standby {
                leader: leader.clone(),
            })
        {
            tracing::info!(leader = ?leader, epoch = lease.epoch, "standing by");
        }
        shared.set_role(Role::Standby { leader });
    }
    let _ = watch.observe(&lease, Instant::now(), shared.config.leader_ttl);
}

/// Stops the leader's work: no more writes (the store refuses them), no more heartbeat
/// acks, every worker stream ended so that its worker goes to the new leader.
fn step_down(shared: &Shared, duties: &mut Duties, lease: Option<&Lease>) {
    shared.store.stand_down();
    duties.stop();
    let leader = lease
        .filter(|l| !l.holder.is_empty())
        .map(|l| (l.holder.clone(), l.url.clone()));
    shared.set_role(Role::Standby { leader });
    shared.forget_cluster();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, epoch: u64, renewals: u64) -> Lease {
        Lease {
            holder: holder.into(),
            url: format!("http://{holder}:50051"),
            epoch,
            renewals,
            sole: false,
        }
    }

    #[test]
    fn a_lease_is_taken_only_after_a_whole_ttl_unrenewed() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        let mut w = Watch::default();
        assert_eq!(w.observe(&lease("a", 1, 7), t0, ttl), None);
        assert_eq!(
            w.observe(&lease("a", 1, 7), t0 + Duration::from_secs(4), ttl),
            None
        );
        // Renewed: the wait starts again from when that was seen.
        let t1 = t0 + Duration::from_millis(4500);
        assert_eq!(w.observe(&lease("a", 1, 8), t1, ttl), None);
        assert_eq!(
            w.observe(&lease("a", 1, 8), t1 + Duration::from_secs(4), ttl),
            None
        );
        let due = w.observe(&lease("a", 1, 8), t1 + ttl, ttl);
        assert_eq!(due, Some(lease("a", 1, 8)));
        // Another holder (or epoch) is a new lease to watch.
        assert_eq!(w.observe(&lease("b", 2, 0), t1 + ttl, ttl), None);
    }

    #[test]
    fn the_holder_stops_before_any_candidate_may_take_over() {
        // The holder sends a renewal at s; a candidate can only see it (or anything
        // later) at or after s, and waits a whole TTL from there.
        let s = Instant::now();
        let ttl = Duration::from_secs(5);
        let holder_stops = validity(&lease("a", 1, 1), s, ttl);
        let earliest_takeover = s + ttl;
        assert!(holder_stops < earliest_takeover);
        assert_eq!(earliest_takeover - holder_stops, Duration::from_secs(1));
    }

    #[test]
    fn roles_say_who_leads() {
        let now = Instant::now();
        let lead = Role::Leader {
            epoch: 3,
            until: now + Duration::from_secs(1),
        };
        assert!(lead.leads_at(now) && !lead.leads_at(now + Duration::from_secs(2)));
        assert_eq!(lead.leader_url("http://me:1"), Some("http://me:1"));
        let stand = Role::Standby {
            leader: Some(("b".into(), "http://b:1".into())),
        };
        assert!(!stand.leads_at(now));
        assert_eq!(stand.leader_url("http://me:1"), Some("http://b:1"));
        assert_eq!(Role::Starting.leader_url("x"), None);
    }
}
