//! Group commit: concurrent calls of one store operation share one transaction.
//!
//! A caller adds its request to the pending list and waits for its turn. The caller whose
//! turn comes takes every pending request (up to `max`), runs them as one batch, hands each
//! waiter its answer and ends its turn. A lone caller runs a batch of one at once, so an
//! idle store is not slowed; under load, requests that arrive while a batch commits ride
//! the next one, and the round trips of a transaction (the fence read, the commit) are paid
//! once per batch instead of once per request.
//!
//! If a caller is dropped while it runs a batch, the waiters in that batch get `None`
//! (the batch may or may not have committed): they answer with a retryable error, as for
//! a lost connection, and the caller's retry decides.

use std::sync::Mutex;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::error::QueueError;

/// Pending requests of type `Q`, answered with `R`.
pub(crate) struct Group<Q, R> {
    pending: Mutex<Vec<(Q, oneshot::Sender<R>)>>,
    turn: tokio::sync::Mutex<()>,
    max: usize,
}

impl<Q, R> Group<Q, R> {
    /// At most `max` requests per batch.
    pub(crate) fn new(max: usize) -> Self {
        Group {
            pending: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
            max: max.max(1),
        }
    }

    /// Runs `q` in a batch `run` executes; `run` answers each request of the batch, in
    /// order. `None`: the batch that held `q` was abandoned before it answered.
    pub(crate) async fn submit<'a, F>(&'a self, q: Q, run: F) -> Option<R>
    where
        F: Fn(Vec<Q>) -> BoxFuture<'a, Vec<R>>,
    {
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().expect("group lock").push((q, tx));
        let _turn = self.turn.lock().await;
        loop {
            // The batch before this turn may have carried this request.
            match rx.try_recv() {
                Ok(r) => return Some(r),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<_> = {
                let mut p = self.pending.lock().expect("group lock");
                let n = p.len().min(self.max);
                p.drain(..n).collect()
            };
            let (qs, txs): (Vec<Q>, Vec<_>) = batch.into_iter().unzip();
            let rs = run(qs).await;
            for (tx, r) in txs.into_iter().zip(rs) {
                let _ = tx.send(r);
            }
        }
    }
}

/// The same error for each request of a batch that failed as a whole.
pub(crate) fn share(e: &QueueError) -> QueueError {
    match e {
        QueueError::Fenced { epoch, current } => QueueError::Fenced {
            epoch: *epoch,
            current: *current,
        },
        QueueError::Backend {
            backend,
            message,
            retryable,
        } => QueueError::Backend {
            backend,
            message: message.clone(),
            retryable: *retryable,
        },
        other => QueueError::Backend {
            backend: "store",
            message: other.to_string(),
            retryable: other.is_retryable(),
        },
    }
}

/// The answer of a request whose batch was abandoned.
pub(crate) fn abandoned(backend: &'static str) -> QueueError {
    QueueError::Backend {
        backend,
        message: "the batch carrying this write was abandoned before it answered; \
                  it may or may not be stored"
            .into(),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let group = Arc::new(Group::<u32, u32>::new(64));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut calls = Vec::new();
        for i in 0..50u32 {
            let (group, batches, gate) = (group.clone(), batches.clone(), gate.clone());
            calls.push(tokio::spawn(async move {
                group
                    .submit(i, |qs| {
                        let (batches, gate) = (batches.clone(), gate.clone());
                        async move {
                            batches.lock().unwrap().push(qs.len());
                            // The first batch holds its turn until the rest are pending.
                            let _ = gate.acquire().await;
                            qs.iter().map(|q| q * 10).collect()
                        }
                        .boxed()
                    })
                    .await
            }));
        }
        let first = || batches.lock().unwrap().first().copied();
        while first().is_none_or(|n| n + group.pending.lock().unwrap().len() < 50) {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1000);
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Some(i as u32 * 10));
        }
        // The first batch, and one of all that waited behind it.
        let sizes = batches.lock().unwrap().clone();
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 50);
    }

    #[tokio::test]
    async fn a_batch_dropped_midway_answers_none_and_later_requests_still_run() {
        let group = Arc::new(Group::<u32, u32>::new(8));
        let g = group.clone();
        let runner =
            tokio::spawn(async move { g.submit(1, |_| futures::future::pending().boxed()).await });
        while group.turn.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        runner.abort();
        assert!(runner.await.is_err());
        let r = group
            .submit(2, |qs| {
                async move { qs.iter().map(|q| q + 1).collect() }.boxed()
            })
            .await;
        assert_eq!(r, Some(3));
        assert!(abandoned("x").is_retryable());
    }
}
