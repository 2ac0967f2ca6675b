//! The leader lease, `SETTINGS {_id: "leader", holder, url, epoch, renewals}`, and the
//! masters seen, `MASTERS {_id, url, last_seen}` (see [`crate::leader`] for the rule).
//! Every change of the lease is one conditional `findAndModify`, so two candidates never
//! both take it; the epoch check of a leader's write reads the lease inside the write's
//! own transaction.

use bson::{doc, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::{ReplaceOptions, ReturnDocument};
use mongodb::ClientSession;

use super::doc::{bdate, i64_of, Fields};
use super::exec::{is_duplicate_key, retry, Fail};
use super::MongoStore;
use crate::error::{QueueError, Result};
use std::sync::atomic::Ordering;

use crate::leader::{Candidate, Lease, Member};

/// `_id` of the lease document in `SETTINGS`.
const LEADER_ID: &str = "leader";

/// The fence of a store handle whose master never campaigned (a tool, a test): its
/// writes are not checked.
pub(super) const UNFENCED: u64 = 0;
/// The fence of a master that does not lead: every write only the leader may make is
/// refused.
const STANDBY: u64 = u64::MAX;

fn lease_of(d: &Document) -> Result<Lease> {
    let f = Fields(d);
    Ok(Lease {
        holder: f.opt_str("holder")?.unwrap_or_default(),
        url: f.opt_str("url")?.unwrap_or_default(),
        epoch: f.uint("epoch")?,
        renewals: f.uint("renewals")?,
        sole: false,
    })
}

impl MongoStore {
    pub(super) async fn campaign_once(
        &self,
        me: &Candidate,
        held: Option<u64>,
        takeover: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Lease> {
        let r = self.campaign_round(me, held, takeover, now).await;
        // A lease just taken: end every transaction still open on the server, so that none
        // an earlier leader began before the take (whose epoch check it passed) can commit
        // once this master starts writing. Until this is done, this master writes nothing.
        let r = match r {
            Ok((lease, true)) => self.end_open_transactions().await.map(|()| lease),
            Ok((lease, false)) => Ok(lease),
            Err(e) => Err(e),
        };
        // From now on this master's leader writes carry what it found (a failed round
        // changes nothing: the master decides from its own clock when to stop writing).
        if let Ok(lease) = &r {
            let fence = if lease.held_by(&me.id) {
                lease.epoch
            } else {
                STANDBY
            };
            self.fence.store(fence, Ordering::SeqCst);
        }
        r
    }

    /// This master stops writing as leader (its lease ran out by its own clock, or it is
    /// shutting down): every later leader write is refused until it leads again.
    pub(super) fn stand_down(&self) {
        self.fence.store(STANDBY, Ordering::SeqCst);
    }

    async fn campaign_round(
        &self,
        me: &Candidate,
        held: Option<u64>,
        takeover: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<(Lease, bool)> {
        let member = doc! { "_id": &me.id, "url": &me.url, "last_seen": bdate(now) };
        retry("campaign", || async {
            self.masters
                .replace_one(doc! { "_id": &me.id }, member.clone())
                .with_options(ReplaceOptions::builder().upsert(true).build())
                .await?;
            // The holder renews, on its own epoch only.
            if let Some(epoch) = held {
                let renewed = self
                    .settings
                    .find_one_and_update(
                        doc! { "_id": LEADER_ID, "holder": &me.id, "epoch": i64_of(epoch) },
                        doc! { "$inc": { "renewals": 1_i64 }, "$set": { "url": &me.url } },
                    )
                    .return_document(ReturnDocument::After)
                    .await?;
                if let Some(d) = renewed {
                    return Ok((lease_of(&d)?, false));
                }
            }
            let current = self.settings.find_one(doc! { "_id": LEADER_ID }).await?;
            let Some(d) = current else {
                let fresh = doc! {
                    "_id": LEADER_ID, "holder": &me.id, "url": &me.url,
                    "epoch": 1_i64, "renewals": 0_i64,
                };
                return match self.settings.insert_one(fresh.clone()).await {
                    Ok(_) => Ok((lease_of(&fresh)?, true)),
                    // Another master created it first: it is that one's.
                    Err(e) if is_duplicate_key(&e) => Err(Fail::Conflict),
                    Err(e) => Err(e.into()),
                };
            };
            let lease = lease_of(&d)?;
            // Vacant (resigned), watched unrenewed for a whole TTL, or held under this id by
            // an earlier run of this master (which had no view to resume): taken, with a
            // new epoch that fences every write made under the old one.
            let free = lease.holder.is_empty()
                || takeover == Some(&lease)
                || (lease.holder == me.id && held != Some(lease.epoch));
            if !free {
                return Ok((lease, false));
            }
            let taken = self
                .settings
                .find_one_and_update(
                    doc! {
                        "_id": LEADER_ID,
                        "holder": &lease.holder,
                        "epoch": i64_of(lease.epoch),
                        "renewals": i64_of(lease.renewals),
                    },
                    doc! {
                        "$set": { "holder": &me.id, "url": &me.url, "renewals": 0_i64 },
                        "$inc": { "epoch": 1_i64 },
                    },
                )
                .return_document(ReturnDocument::After)
                .await?;
            match taken {
                Some(d) => Ok((lease_of(&d)?, true)),
                // It moved meanwhile (renewed, or taken by another): look again.
                None => Err(Fail::Conflict),
            }
        })
        .await
    }

    /// `killAllSessions`: aborts every open transaction (MongoDB: "kills all sessions for
    /// all users", which needs the `killAnySession` privilege under access control). The
    /// transactions of live masters that it aborts are retried by them; a deposed leader's
    /// retry then fails its epoch check.
    async fn end_open_transactions(&self) -> Result<()> {
        retry("kill open transactions", || async {
            self.client
                .database("admin")
                .run_command(doc! { "killAllSessions": [] })
                .await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn resign_lease(&self, holder: &str, epoch: u64) -> Result<()> {
        retry("resign", || async {
            self.settings
                .update_one(
                    doc! { "_id": LEADER_ID, "holder": holder, "epoch": i64_of(epoch) },
                    doc! { "$set": { "holder": "", "url": "" } },
                )
                .await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn read_lease(&self) -> Result<Option<Lease>> {
        let d = retry("read lease", || async {
            Ok(self.settings.find_one(doc! { "_id": LEADER_ID }).await?)
        })
        .await?;
        d.as_ref().map(lease_of).transpose()
    }

    pub(super) async fn leader_group(&self) -> Result<(Option<Lease>, Vec<Member>)> {
        let lease = self.read_lease().await?;
        let docs: Vec<Document> = retry("list masters", || async {
            let c = self.masters.find(doc! {}).sort(doc! { "_id": 1 }).await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        let members = docs
            .iter()
            .map(|d| {
                let f = Fields(d);
                Ok(Member {
                    id: f.str("_id")?,
                    url: f.opt_str("url")?.unwrap_or_default(),
                    last_seen: f.date("last_seen")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((lease, members))
    }

    /// Inside a leader's write transaction: the write goes on only while the epoch this
    /// master leads under is the lease's (as of the transaction's snapshot), else `Fenced`.
    pub(super) async fn check_fence(&self, s: &mut ClientSession) -> Result<(), Fail> {
        let fence = self.fence.load(Ordering::SeqCst);
        if fence == UNFENCED {
            return Ok(());
        }
        let d = self
            .settings
            .find_one(doc! { "_id": LEADER_ID })
            .projection(doc! { "epoch": 1 })
            .session(&mut *s)
            .await?;
        let current = match &d {
            Some(d) => Fields(d).uint("epoch")?,
            None => 0,
        };
        if current != fence {
            return Err(QueueError::Fenced {
                epoch: if fence == STANDBY { 0 } else { fence },
                current,
            }
            .into());
        }
        Ok(())
    }
}
