//! Backpressure on enqueue: a per-client rate limit (`governor`, keyed by the
//! authenticated user or else the peer's IP address). Over it the caller gets
//! `RESOURCE_EXHAUSTED` with a message that says which limit, its value and the flag that
//! sets it, never a silent drop, and `grpc-retry-pushback-ms` so well-behaved clients know
//! when to come back. The cap on queued tasks (`--max-queued`) is the store's, checked
//! atomically with the insert (`StoreOptions::max_queued`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::Status;

use crate::config::MasterConfig;

/// Keys kept by the rate limiter before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The enqueue limits of one master.
pub struct EnqueueLimits {
    rate: Option<(DefaultKeyedRateLimiter<String>, u32, u32)>,
}

impl EnqueueLimits {
    /// Limits from the config: `enqueue_rate` tasks/s per client with a burst of
    /// `enqueue_burst` (a rate of 0 turns the limit off).
    pub fn new(config: &MasterConfig) -> Self {
        let rate = NonZeroU32::new(config.enqueue_rate).map(|per_second| {
            let burst = NonZeroU32::new(config.enqueue_burst).unwrap_or(per_second);
            let quota = Quota::per_second(per_second).allow_burst(burst);
            (RateLimiter::keyed(quota), per_second.get(), burst.get())
        });
        EnqueueLimits { rate }
    }

    /// The most tasks one call may take (`--enqueue-burst`); `None` without a limit.
    pub fn burst(&self) -> Option<u32> {
        self.rate.as_ref().map(|r| r.2)
    }

    /// Takes `n` tasks from `client`'s budget, or says when to come back.
    pub fn check_rate(&self, client: &str, n: usize) -> Result<(), Status> {
        let Some((limiter, per_second, burst)) = &self.rate else {
            return Ok(());
        };
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 {
                Ok(())
            } else {
                Err(too_big(n, *burst))
            };
        };
        if limiter.len() > MAX_TRACKED_CLIENTS {
            limiter.retain_recent();
        }
        match limiter.check_key_n(&client.to_string(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Err(pushback(
                    Status::resource_exhausted(format!(
                        "enqueue rate limit exceeded for client {client}: at most {per_second} tasks/s \
                         with bursts of {burst} (--enqueue-rate, --enqueue-burst); retry in {} ms",
                        wait.as_millis().max(1)
                    )),
                    wait,
                ))
            }
            Err(_) => Err(too_big(n.get() as usize, *burst)),
        }
    }
}

fn too_big(n: usize, burst: u32) -> Status {
    Status::resource_exhausted(format!(
        "a batch of {n} tasks is more than the enqueue burst of {burst} (--enqueue-burst); \
         split it"
    ))
}

fn pushback(mut status: Status, wait: Duration) -> Status {
    if let Ok(v) = wait.as_millis().max(1).to_string().parse() {
        status.metadata_mut().insert("grpc-retry-pushback-ms", v);
    }
    status
}

/// Who a request comes from, for the rate limit: the authenticated user, else the peer's
/// IP address (every connection of one host shares a budget), else "unknown".
pub fn client_key<T>(request: &tonic::Request<T>) -> String {
    if let Some(name) = crate::auth::submitter(request) {
        return format!("user:{name}");
    }
    match request.remote_addr() {
        Some(addr) => format!("ip:{}", addr.ip()),
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn limits(rate: u32, burst: u32) -> EnqueueLimits {
        EnqueueLimits::new(&MasterConfig {
            enqueue_rate: rate,
            enqueue_burst: burst,
            ..MasterConfig::default()
        })
    }

    #[test]
    fn each_client_has_its_own_budget() {
        let l = limits(1, 3);
        for _ in 0..3 {
            l.check_rate("ip:10.0.0.1", 1).unwrap();
        }
        let err = l.check_rate("ip:10.0.0.1", 1).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("ip:10.0.0.1"), "{}", err.message());
        assert!(
            err.message().contains("--enqueue-rate"),
            "{}",
            err.message()
        );
        let ms: u64 = err
            .metadata()
            .get("grpc-retry-pushback-ms")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ms > 0 && ms <= 1000, "{ms}");
        l.check_rate("ip:10.0.0.2", 3).unwrap();
    }

    #[test]
    fn a_batch_spends_its_size_and_one_over_the_burst_is_refused() {
        let l = limits(10, 5);
        l.check_rate("c", 5).unwrap();
        assert!(l.check_rate("c", 1).is_err());
        let err = l.check_rate("d", 6).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("batch of 6"), "{}", err.message());
        l.check_rate("d", 0).unwrap();
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let l = limits(0, 0);
        for _ in 0..10_000 {
            l.check_rate("c", 1).unwrap();
        }
        l.check_rate("c", 1 << 20).unwrap();
    }
}
