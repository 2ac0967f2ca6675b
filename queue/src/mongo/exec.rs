//! Running MongoDB operations: which driver errors are transient, bounded retries with the
//! `backoff` crate, and multi-document transactions.
//!
//! The driver already retries a retryable write once (retryable writes are on). On top of
//! that, an operation that still fails with a transient error (network, primary stepping
//! down, a `RetryableWriteError` / `TransientTransactionError` label, a write conflict) is
//! retried with exponential backoff for at most [`RETRY_BUDGET`]; then, or at once for a
//! permanent error, it surfaces as [`QueueError::Backend`] with the driver's message.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use futures::future::BoxFuture;
use mongodb::error::{
    Error, ErrorKind, WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
    SYSTEM_OVERLOADED_ERROR, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use mongodb::options::ReadConcern;
use mongodb::{Client, ClientSession};

use crate::error::QueueError;

/// Longest time spent retrying one operation before giving up.
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// Server codes that mean "try again": MongoDB's retryable-error list plus `WriteConflict`.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    43,    // CursorNotFound: a read's cursor was closed (a new leader ending every session)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

const DUPLICATE_KEY: i32 = 11000;

/// Why one try of an operation failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A domain answer (not found, stale token, ...): returned as is, never retried.
    Domain(QueueError),
    /// The driver failed; retried when transient.
    Db(Error),
    /// A conditional write matched nothing because the document changed under us;
    /// the whole operation is run again.
    Conflict,
}

impl From<QueueError> for Fail {
    fn from(e: QueueError) -> Self {
        Fail::Domain(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Db(e)
    }
}

/// Server error code of a command or write error, if any.
fn codes(e: &Error) -> Vec<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => vec![c.code],
        ErrorKind::Write(WriteFailure::WriteError(w)) => vec![w.code],
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => vec![w.code],
        ErrorKind::InsertMany(m) => m
            .write_errors
            .iter()
            .flatten()
            .map(|w| w.code)
            .chain(m.write_concern_error.iter().map(|w| w.code))
            .collect(),
        _ => Vec::new(),
    }
}

/// True when the same operation may succeed if tried again.
pub(crate) fn is_transient(e: &Error) -> bool {
    [
        RETRYABLE_WRITE_ERROR,
        TRANSIENT_TRANSACTION_ERROR,
        UNKNOWN_TRANSACTION_COMMIT_RESULT,
        RETRYABLE_ERROR,
        SYSTEM_OVERLOADED_ERROR,
    ]
    .iter()
    .any(|l| e.contains_label(l))
        || matches!(
            e.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. }
        )
        || codes(e).iter().any(|c| TRANSIENT_CODES.contains(c))
}

/// True for a unique-index violation (`E11000`).
pub(crate) fn is_duplicate_key(e: &Error) -> bool {
    codes(e).contains(&DUPLICATE_KEY)
}

/// The typed error for a driver failure.
pub(crate) fn backend_error(e: &Error) -> QueueError {
    QueueError::Backend {
        backend: "mongodb",
        message: e.to_string(),
        retryable: is_transient(e),
    }
}

fn policy() -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: Duration::from_millis(10),
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: Duration::from_secs(1),
        max_elapsed_time: Some(RETRY_BUDGET),
        ..ExponentialBackoff::default()
    }
}

/// Decides what to do after a failed try: `Ok(delay)` to retry, `Err` to give up.
fn next_step(
    op: &'static str,
    policy: &mut ExponentialBackoff,
    fail: Fail,
) -> Result<Duration, QueueError> {
    match fail {
        Fail::Domain(e) => Err(e),
        Fail::Db(e) if is_transient(&e) => match policy.next_backoff() {
            Some(delay) => {
                tracing::debug!(op, error = %e, ?delay, "transient mongodb error, retrying");
                Ok(delay)
            }
            None => {
                tracing::warn!(op, error = %e, "mongodb retries exhausted");
                Err(backend_error(&e))
            }
        },
        Fail::Db(e) => Err(backend_error(&e)),
        Fail::Conflict => policy.next_backoff().ok_or_else(|| QueueError::Backend {
            backend: "mongodb",
            message: format!("{op}: the document kept changing concurrently"),
            retryable: true,
        }),
    }
}

/// Runs `f` until it succeeds, fails permanently, or the retry budget is spent.
pub(crate) async fn retry<T, F, Fut>(op: &'static str, mut f: F) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Fail>>,
{
    let mut policy = policy();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(fail) => tokio::time::sleep(next_step(op, &mut policy, fail)?).await,
        }
    }
}

/// Runs `body` in a multi-document transaction (snapshot reads, the client's write concern,
/// `majority` by default) and commits it. A transient failure, a write conflict with another
/// transaction or a [`Fail::Conflict`] runs the whole body again, within the retry budget.
/// `ctx` is handed to each run, so the body can borrow from the caller.
pub(crate) async fn in_txn<C, R, F>(
    client: &Client,
    op: &'static str,
    mut ctx: C,
    mut body: F,
) -> Result<R, QueueError>
where
    C: Send,
    R: Send,
    F: for<'b> FnMut(&'b mut ClientSession, &'b mut C) -> BoxFuture<'b, Result<R, Fail>>,
{
    let mut policy = policy();
    let mut session = loop {
        match client.start_session().await {
            Ok(s) => break s,
            Err(e) => tokio::time::sleep(next_step(op, &mut policy, e.into())?).await,
        }
    };
    loop {
        let attempt = async {
            session
                .start_transaction()
                .read_concern(ReadConcern::snapshot())
                .await?;
            match body(&mut session, &mut ctx).await {
                Ok(v) => {
                    commit(&mut session).await?;
                    Ok(v)
                }
                Err(e) => {
                    // The server may have aborted it already; the abort is best effort.
                    let _ = session.abort_transaction().await;
                    Err(e)
                }
            }
        };
        match attempt.await {
            Ok(v) => return Ok(v),
            Err(fail) => tokio::time::sleep(next_step(op, &mut policy, fail)?).await,
        }
    }
}

/// Commits, retrying the commit itself (not the body) while its result is unknown, as the
/// MongoDB transactions documentation prescribes.
async fn commit(session: &mut ClientSession) -> Result<(), Fail> {
    let mut tries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 3 => {
                tries += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_transient_and_arguments_are_not() {
        let io: Error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert!(is_transient(&io));
        assert!(backend_error(&io).is_retryable());
        let arg = Error::custom("x");
        assert!(!is_transient(&arg));
        let e = backend_error(&arg);
        assert!(matches!(
            e,
            QueueError::Backend {
                backend: "mongodb",
                retryable: false,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn retry_stops_at_domain_errors_and_retries_conflicts() {
        let mut calls = 0;
        let r: Result<(), _> = retry("t", || {
            calls += 1;
            async { Err(Fail::Domain(QueueError::NoMatch("x".into()))) }
        })
        .await;
        assert!(matches!(r, Err(QueueError::NoMatch(_))));
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r = retry("t", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(Fail::Conflict)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
    }
}
