//! Ending the streams of workers whose join token was rotated out.
//!
//! At `Register` the worker service records, per stream, which stored join-token hash the
//! worker's token matched ([`JoinedWith`]). [`JoinWatch`] reads the store's current and
//! replaced hashes every [`CHECK_EVERY`] and ends each stream whose token is neither the
//! current one nor the replaced one within its grace, with `UNAUTHENTICATED` and
//! [`ROTATED`]. Each master checks only its own streams against the store, so a rotation
//! made through any master, or written into the store by `cloudai token rotate --store`,
//! reaches every worker of every master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudai_queue::QueueStore;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::Status;

pub use super::join::JoinedWith;

/// How often each master compares its workers' join tokens with the store's.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long one check waits for the store before it gives up until the next.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The message of the `UNAUTHENTICATED` status that ends a rotated-out worker's stream
/// (the worker logs it and stops).
pub const ROTATED: &str = "join token was rotated; restart with the new --join-token \
                           (or CLOUDAI_JOIN_TOKEN / --join-token-file)";

/// True while a worker that registered with `joined` may stay connected: its token is
/// the current one, or the replaced one before the end of its grace.
pub fn still_admitted(
    joined: &str,
    current: Option<&str>,
    previous: Option<(&str, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> bool {
    current == Some(joined) || previous.is_some_and(|(h, until)| h == joined && now < until)
}

/// One watched stream.
struct Watched {
    /// Its place in the order streams were watched in (see [`JoinWatch::check`]).
    seq: u64,
    worker_id: String,
    joined: JoinedWith,
    kick: watch::Sender<bool>,
}

/// The connected workers of this master and the join token each registered with.
pub struct JoinWatch {
    store: Arc<dyn QueueStore>,
    conns: Mutex<Conns>,
    started: AtomicBool,
    shutdown: watch::Receiver<bool>,
}

#[derive(Default)]
struct Conns {
    by_id: HashMap<u64, Watched>,
    /// The next stream's `seq`.
    next: u64,
}

/// Resolves when the stream it was handed for must end because its token was rotated
/// out; never for a stream that is not watched (auth off).
#[derive(Clone)]
pub struct Rotated(Option<watch::Receiver<bool>>);

impl Rotated {
    /// Waits until the stream's join token no longer admits it.
    pub async fn fired(&mut self) {
        if let Some(rx) = &mut self.0 {
            if rx.wait_for(|k| *k).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

/// `stream`, ended by an `UNAUTHENTICATED` [`ROTATED`] status when `rotated` fires.
pub fn until_rotated<T, S>(stream: S, rotated: Rotated) -> impl Stream<Item = Result<T, Status>>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    futures::stream::unfold(Some((stream, rotated)), |state| async move {
        let (mut stream, mut rotated) = state?;
        tokio::select! {
            biased;
            _ = rotated.fired() => Some((Err(Status::unauthenticated(ROTATED)), None)),
            item = stream.next() => item.map(|i| (i, Some((stream, rotated)))),
        }
    })
}

impl JoinWatch {
    /// A watch over `store`'s join tokens; its loop (started with the first watched
    /// stream) ends when `shutdown` turns true.
    pub fn new(store: Arc<dyn QueueStore>, shutdown: watch::Receiver<bool>) -> Arc<JoinWatch> {
        Arc::new(JoinWatch {
            store,
            conns: Mutex::default(),
            started: AtomicBool::new(false),
            shutdown,
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches stream `conn_id` of `worker_id`, which registered with `joined` (`None`:
    /// auth is off, nothing to watch).
    pub fn watch(
        self: &Arc<Self>,
        conn_id: u64,
        worker_id: &str,
        joined: Option<JoinedWith>,
    ) -> Rotated {
        let Some(joined) = joined else {
            return Rotated(None);
        };
        let (kick, rx) = watch::channel(false);
        {
            let mut conns = self.conns();
            let seq = conns.next;
            conns.next += 1;
            let w = Watched {
                seq,
                worker_id: worker_id.to_string(),
                joined,
                kick,
            };
            conns.by_id.insert(conn_id, w);
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run());
        }
        Rotated(Some(rx))
    }

    /// Stops watching stream `conn_id` (it ended).
    pub fn forget(&self, conn_id: u64) {
        self.conns().by_id.remove(&conn_id);
    }

    async fn run(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if !self.conns().by_id.is_empty() {
                self.check().await;
            }
        }
    }

    /// Compares every watched stream's token with the store's and ends those rotated
    /// out; how many it ended. A store that does not answer ends none. Only streams
    /// watched before the store is read are judged: a worker admitted meanwhile (with a
    /// token newer than what this read may return) waits for the next check.
    pub async fn check(&self) -> usize {
        let upto = self.conns().next;
        let read = async {
            let current = self.store.join_token_hash().await?;
            let previous = self.store.previous_join_token().await?;
            Ok::<_, cloudai_queue::QueueError>((current, previous))
        };
        let (current, previous) = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read the join tokens; checking later");
                return 0;
            }
            Err(_) => {
                tracing::debug!("the store did not answer for the join tokens; checking later");
                return 0;
            }
        };
        let now = Utc::now();
        let previous = previous.as_ref().map(|(h, until)| (h.as_str(), *until));
        let mut conns = self.conns();
        let out: Vec<u64> = conns
            .by_id
            .iter()
            .filter(|(_, w)| w.seq < upto)
            .filter(|(_, w)| !still_admitted(&w.joined.0, current.as_deref(), previous, now))
            .map(|(id, _)| *id)
            .collect();
        for id in &out {
            if let Some(w) = conns.by_id.remove(id) {
                tracing::warn!(
                    worker_id = %w.worker_id,
                    "the worker's join token was rotated and its grace is over; ending its stream"
                );
                w.kick.send_replace(true);
            }
        }
        out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudai_queue::sqlite::SqliteStore;
    use cloudai_queue::StoreOptions;

    #[test]
    fn current_or_replaced_within_its_grace() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(5);
        assert!(still_admitted("a", Some("a"), None, now));
        assert!(!still_admitted("a", Some("b"), None, now));
        assert!(!still_admitted("a", None, None, now));
        assert!(still_admitted("a", Some("b"), Some(("a", later)), now));
        assert!(!still_admitted("a", Some("b"), Some(("a", now)), now));
        assert!(!still_admitted("a", Some("c"), Some(("b", later)), now));
    }

    #[tokio::test]
    async fn streams_of_a_rotated_out_token_end_and_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn QueueStore> = Arc::new(
            SqliteStore::open(&dir.path().join("q.db"), StoreOptions::default())
                .await
                .unwrap(),
        );
        let (a, b) = (
            "hmac-sha256:aaaaaaaaaaaaaaaa",
            "hmac-sha256:bbbbbbbbbbbbbbbb",
        );
        store.set_join_token_hash(a, true).await.unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let w = JoinWatch::new(store.clone(), shutdown);
        // Checked by hand here, not by the loop.
        w.started.store(true, Ordering::Release);
        let mut old = w.watch(1, "w1", Some(JoinedWith(a.into())));
        let mut open = w.watch(2, "w2", None);
        assert_eq!(w.check().await, 0);

        // Rotated with a grace: the old token's stream stays until it ends.
        let until = Utc::now() + chrono::Duration::hours(1);
        store.set_previous_join_token(a, until).await.unwrap();
        store.set_join_token_hash(b, false).await.unwrap();
        let mut new = w.watch(3, "w3", Some(JoinedWith(b.into())));
        assert_eq!(w.check().await, 0);
        store.set_previous_join_token(a, Utc::now()).await.unwrap();
        assert_eq!(w.check().await, 1);
        tokio::time::timeout(Duration::from_secs(5), old.fired())
            .await
            .expect("the old token's stream is told to end");
        let quiet = Duration::from_millis(50);
        assert!(tokio::time::timeout(quiet, new.fired()).await.is_err());
        assert!(tokio::time::timeout(quiet, open.fired()).await.is_err());
        w.forget(3);
        assert!(tokio::time::timeout(quiet, new.fired()).await.is_err());
        assert_eq!(w.check().await, 0);
    }
}
