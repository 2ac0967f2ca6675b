//! API users (`USERS`, one document per user, `_id` = name, unique `token_hash`) and the
//! join token hash (`SETTINGS`, `_id: "join_token"`). Only keyed hashes are stored.

use bson::{doc, Document};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::options::ReplaceOptions;

use super::doc::{bdate, corrupt, i64_of, Fields};
use super::exec::{is_duplicate_key, retry};
use super::MongoStore;
use crate::error::{QueueError, Result};
use crate::quota::Quota;
use crate::users::{validate_token_hash, validate_user_name, Role, UserRecord};

/// `_id` of the join token's document in `SETTINGS`.
const JOIN_TOKEN_ID: &str = "join_token";
/// `_id` of the replaced join token's document (`value`: hash, `until`: end of grace).
const PREVIOUS_JOIN_TOKEN_ID: &str = "join_token_previous";

fn user_doc(u: &UserRecord) -> Document {
    let mut d = doc! {
        "_id": &u.name,
        "role": u.role.as_str(),
        "token_hash": &u.token_hash,
        "created_at": bdate(u.created_at),
    };
    if let Some(q) = &u.quota {
        d.insert("quota", quota_doc(q));
    }
    d
}

/// A quota as stored: only the limits it sets, each an int64.
fn quota_doc(q: &Quota) -> Document {
    let mut d = Document::new();
    let limits = [
        ("cpu_millis", q.cpu_millis),
        ("memory_bytes", q.memory_bytes),
        ("gpus", q.gpus.map(u64::from)),
        ("running", q.running.map(u64::from)),
    ];
    for (k, v) in limits {
        if let Some(v) = v {
            d.insert(k, i64_of(v));
        }
    }
    d
}

fn quota_of(d: &Document) -> Result<Quota> {
    let f = Fields(d);
    let n = |k: &str| -> Result<Option<u64>> {
        f.opt_int(k)?
            .map(|v| u64::try_from(v).map_err(|_| corrupt(format!("negative quota {k}"))))
            .transpose()
    };
    let small = |k: &str| -> Result<Option<u32>> {
        n(k)?
            .map(|v| u32::try_from(v).map_err(|_| corrupt(format!("quota {k} out of range"))))
            .transpose()
    };
    Ok(Quota {
        cpu_millis: n("cpu_millis")?,
        memory_bytes: n("memory_bytes")?,
        gpus: small("gpus")?,
        running: small("running")?,
    })
}

fn user_of(d: &Document) -> Result<UserRecord> {
    let f = Fields(d);
    Ok(UserRecord {
        name: f.str("_id")?,
        role: f.str("role")?.parse::<Role>()?,
        token_hash: f.str("token_hash")?,
        created_at: f.date("created_at")?,
        quota: match d.get_document("quota") {
            Ok(q) => Some(quota_of(q)?),
            Err(_) => None,
        },
    })
}

impl MongoStore {
    pub(super) async fn insert_user(&self, u: &UserRecord) -> Result<()> {
        validate_user_name(&u.name)?;
        validate_token_hash(&u.token_hash)?;
        let d = user_doc(u);
        retry("add user", || async {
            match self.users.insert_one(d.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => {
                    // A retried insert that had landed is ours; anything else is taken.
                    match self.users.find_one(doc! { "_id": &u.name }).await? {
                        Some(existing) if existing == d => Ok(()),
                        Some(_) => Err(QueueError::UserExists(u.name.clone()).into()),
                        None => Err(QueueError::invalid(
                            "token hash",
                            "already used by another user",
                        )
                        .into()),
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn find_user(&self, filter: Document) -> Result<Option<UserRecord>> {
        let d = retry("get user", || async {
            Ok(self.users.find_one(filter.clone()).await?)
        })
        .await?;
        d.as_ref().map(user_of).transpose()
    }

    pub(super) async fn user_named(&self, name: &str) -> Result<Option<UserRecord>> {
        self.find_user(doc! { "_id": name }).await
    }

    pub(super) async fn user_with_hash(&self, hash: &str) -> Result<Option<UserRecord>> {
        self.find_user(doc! { "token_hash": hash }).await
    }

    pub(super) async fn all_users(&self) -> Result<Vec<UserRecord>> {
        let docs: Vec<Document> = retry("list users", || async {
            let c = self.users.find(doc! {}).sort(doc! { "_id": 1 }).await?;
            Ok(c.try_collect().await?)
        })
        .await?;
        docs.iter().map(user_of).collect()
    }

    pub(super) async fn delete_user(&self, name: &str) -> Result<bool> {
        let n = retry("remove user", || async {
            Ok(self
                .users
                .delete_one(doc! { "_id": name })
                .await?
                .deleted_count)
        })
        .await?;
        Ok(n > 0)
    }

    pub(super) async fn replace_user_hash(&self, name: &str, hash: &str) -> Result<bool> {
        validate_token_hash(hash)?;
        retry("rotate user token", || async {
            match self
                .users
                .update_one(
                    doc! { "_id": name },
                    doc! { "$set": { "token_hash": hash } },
                )
                .await
            {
                Ok(r) => Ok(r.matched_count > 0),
                Err(e) if is_duplicate_key(&e) => {
                    Err(QueueError::invalid("token hash", "already used by another user").into())
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub(super) async fn replace_user_quota(
        &self,
        name: &str,
        quota: Option<Quota>,
    ) -> Result<bool> {
        let update = match &quota {
            Some(q) => doc! { "$set": { "quota": quota_doc(q) } },
            None => doc! { "$unset": { "quota": "" } },
        };
        retry("set user quota", || async {
            let r = self
                .users
                .update_one(doc! { "_id": name }, update.clone())
                .await?;
            Ok(r.matched_count > 0)
        })
        .await
    }

    pub(super) async fn stored_join_hash(&self) -> Result<Option<String>> {
        let d = retry("get join token", || async {
            Ok(self
                .settings
                .find_one(doc! { "_id": JOIN_TOKEN_ID })
                .await?)
        })
        .await?;
        d.as_ref().map(|d| Fields(d).str("value")).transpose()
    }

    pub(super) async fn store_join_hash(&self, hash: &str, only_if_absent: bool) -> Result<bool> {
        validate_token_hash(hash)?;
        let d = doc! { "_id": JOIN_TOKEN_ID, "value": hash };
        retry("set join token", || async {
            if only_if_absent {
                match self.settings.insert_one(d.clone()).await {
                    Ok(_) => Ok(true),
                    // Already set: by another master, or by a retried insert of ours.
                    Err(e) if is_duplicate_key(&e) => {
                        let current = self
                            .settings
                            .find_one(doc! { "_id": JOIN_TOKEN_ID })
                            .await?;
                        Ok(current.as_ref() == Some(&d))
                    }
                    Err(e) => Err(e.into()),
                }
            } else {
                self.settings
                    .replace_one(doc! { "_id": JOIN_TOKEN_ID }, d.clone())
                    .with_options(ReplaceOptions::builder().upsert(true).build())
                    .await?;
                Ok(true)
            }
        })
        .await
    }

    pub(super) async fn stored_previous_join(&self) -> Result<Option<(String, DateTime<Utc>)>> {
        let d = retry("get previous join token", || async {
            Ok(self
                .settings
                .find_one(doc! { "_id": PREVIOUS_JOIN_TOKEN_ID })
                .await?)
        })
        .await?;
        d.as_ref()
            .map(|d| {
                let f = Fields(d);
                Ok((f.str("value")?, f.date("until")?))
            })
            .transpose()
    }

    pub(super) async fn store_previous_join(&self, hash: &str, until: DateTime<Utc>) -> Result<()> {
        validate_token_hash(hash)?;
        let d = doc! { "_id": PREVIOUS_JOIN_TOKEN_ID, "value": hash, "until": bdate(until) };
        retry("set previous join token", || async {
            self.settings
                .replace_one(doc! { "_id": PREVIOUS_JOIN_TOKEN_ID }, d.clone())
                .with_options(ReplaceOptions::builder().upsert(true).build())
                .await?;
            Ok(())
        })
        .await
    }
}
