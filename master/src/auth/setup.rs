//! Putting security in place when a master starts, and the operator actions behind
//! `cloudai token rotate` and `cloudai users add` (run by `AdminService`, and by the CLI
//! straight on the store with `--store` for bootstrap and recovery).
//!
//! At start: the auth mode is decided from the address actually bound (and said in the
//! log); when auth is required, the server secret is loaded (or created) and the worker
//! join token is created on the first such start, stored hashed and shown once; the TLS
//! settings are read from the PEM files.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use cloudai_queue::{QueueError, QueueStore, Role, UserRecord};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::config::SecurityConfig;
use super::guard::Auth;
use super::mode::{decide, AuthDecision, AuthFlags, Severity};
use super::token::{new_api_token, new_join_token, SecretError, ServerSecret};
use crate::metrics::ReasonLabel;

/// Why security could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The flags contradict each other.
    #[error("{0}")]
    Flags(String),
    /// The server secret file.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Reading or writing users or the join token.
    #[error("store: {0}")]
    Store(#[from] QueueError),
    /// A TLS file could not be read or does not fit.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsSetupError),
}

/// What [`prepare`] decided for this run.
pub struct Prepared {
    /// The per-call checks.
    pub auth: Arc<Auth>,
    /// TLS settings for the listener, when `--tls-cert` is given.
    pub tls: Option<(crate::tls::TlsFiles, Arc<rustls::ServerConfig>)>,
    /// The auth mode and the notice that was logged.
    pub decision: AuthDecision,
}

/// Sets up auth and TLS for a master bound to `local`.
pub async fn prepare(
    cfg: &SecurityConfig,
    local: SocketAddr,
    store: Arc<dyn QueueStore>,
    refusals: Option<Family<ReasonLabel, Counter>>,
) -> Result<Prepared, SetupError> {
    let decision = decide(
        local,
        AuthFlags {
            insecure: cfg.insecure,
            require_auth: cfg.require_auth,
            tls: cfg.tls_cert.is_some(),
        },
    )
    .map_err(SetupError::Flags)?;
    match decision.severity {
        Severity::Info => tracing::info!(mode = ?decision.mode, "{}", decision.notice),
        Severity::Warning => tracing::warn!(mode = ?decision.mode, "{}", decision.notice),
    }
    let mtls = cfg.client_ca.is_some();
    let auth = if decision.mode.enforced() {
        let (secret, created) = ServerSecret::load_or_create(&cfg.secret_file)?;
        if created {
            tracing::info!(path = %cfg.secret_file.display(), "server secret created");
        }
        ensure_join_token(store.as_ref(), &secret).await?;
        let shell = cfg.shell_token.as_ref().map(|t| t.0.as_str());
        Auth::enforced(secret, store, mtls, shell)
    } else {
        Auth::open(decision.mode, store, mtls)
    };
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let files = crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: cfg.client_ca.clone(),
                client_crl: cfg.client_crl.clone(),
            };
            let tls = (files.clone(), crate::tls::server_config(&files)?);
            tracing::info!(cert = %cert.display(), mtls_for_workers = mtls, "tls on");
            warn_if_expiring(cert);
            Some(tls)
        }
        _ => None,
    };
    let auth = match refusals {
        Some(f) => auth.count_refusals_in(f),
        None => auth,
    };
    Ok(Prepared {
        auth: Arc::new(auth),
        tls,
        decision,
    })
}

/// Warns when the master's certificate ends within 30 days (an expired one was refused
/// by the start-up checks).
fn warn_if_expiring(cert: &std::path::Path) {
    let Ok(info) = std::fs::read(cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| cloudai_proto::transport::cert_info(&pem))
    else {
        return;
    };
    let left = info.not_after - Utc::now();
    if left < chrono::Duration::days(30) {
        tracing::warn!(
            cert = %cert.display(),
            expires = %info.not_after.format("%Y-%m-%d %H:%M UTC"),
            days_left = left.num_days(),
            "the master's certificate expires soon: make a new one before then"
        );
    }
}

/// Creates the join token when the store has none, and shows it once in the log.
/// Returns the new token, or `None` when one existed already.
pub async fn ensure_join_token(
    store: &dyn QueueStore,
    secret: &ServerSecret,
) -> Result<Option<String>, SetupError> {
    if store.join_token_hash().await?.is_some() {
        return Ok(None);
    }
    let token = new_join_token();
    if !store
        .set_join_token_hash(&secret.hash(&token), true)
        .await?
    {
        return Ok(None); // another master created one first
    }
    // On stdout, alone on its line, and never in the log stream (logs are shipped and
    // kept; this secret must not be).
    println!("{token}");
    tracing::warn!(
        "worker join token created and printed on stdout, only this once: give it to \
         workers with CLOUDAI_JOIN_TOKEN or --join-token-file (rotate with `cloudai token \
         rotate`)"
    );
    Ok(Some(token))
}

/// Replaces the join token; returns the new one (the caller shows it once) and, with a
/// `grace` above zero, until when the replaced one is still accepted. The grace covers
/// workers that reconnect (a blip, a master restart) or start before they are given the
/// new token; once it is over, every master ends the streams of the workers that joined
/// with the replaced token ([`super::rotation`]). After a leak, rotate with no grace: the
/// old token stops at once, and its workers are disconnected.
pub async fn rotate_join_token(
    store: &dyn QueueStore,
    secret: &ServerSecret,
    grace: std::time::Duration,
) -> Result<(String, Option<chrono::DateTime<Utc>>), QueueError> {
    let token = new_join_token();
    let mut until = None;
    if let Some(current) = store.join_token_hash().await? {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        // Written also when the grace is zero: it ends one given before.
        let end = Utc::now().checked_add_signed(grace).unwrap_or(Utc::now());
        store.set_previous_join_token(&current, end).await?;
        until = (!grace.is_zero()).then_some(end);
    }
    store
        .set_join_token_hash(&secret.hash(&token), false)
        .await?;
    Ok((token, until))
}

/// Adds a user with a new API token; returns the token (the caller shows it once).
pub async fn add_user(
    store: &dyn QueueStore,
    secret: &ServerSecret,
    name: &str,
    role: Role,
) -> Result<String, QueueError> {
    Ok(add_user_record(store, secret, name, role, None).await?.1)
}

/// [`add_user`] with an optional quota, returning the user as stored too. A taken name is
/// [`QueueError::UserExists`], a bad one [`QueueError::Invalid`].
pub async fn add_user_record(
    store: &dyn QueueStore,
    secret: &ServerSecret,
    name: &str,
    role: Role,
    quota: Option<cloudai_queue::Quota>,
) -> Result<(UserRecord, String), QueueError> {
    cloudai_queue::users::validate_user_name(name)?;
    let token = new_api_token();
    let user = UserRecord {
        name: name.to_string(),
        role,
        token_hash: secret.hash(&token),
        created_at: Utc::now(),
        quota,
    };
    store.add_user(&user).await?;
    Ok((user, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mode::AuthMode;
    use cloudai_queue::sqlite::SqliteStore;
    use cloudai_queue::StoreOptions;

    #[tokio::test]
    async fn modes_join_token_and_users() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn QueueStore> = Arc::new(
            SqliteStore::open(&dir.path().join("q.db"), StoreOptions::default())
                .await
                .unwrap(),
        );
        let cfg = SecurityConfig {
            secret_file: dir.path().join("s"),
            ..SecurityConfig::default()
        };
        let dev = prepare(&cfg, "127.0.0.1:1".parse().unwrap(), store.clone(), None)
            .await
            .unwrap();
        assert_eq!(dev.decision.mode, AuthMode::LocalDev);
        assert!(dev.tls.is_none());
        assert!(!cfg.secret_file.exists(), "local-dev mode sets nothing up");
        assert_eq!(store.join_token_hash().await.unwrap(), None);

        let prod = prepare(&cfg, "0.0.0.0:1".parse().unwrap(), store.clone(), None)
            .await
            .unwrap();
        assert_eq!(prod.decision.mode, AuthMode::Required);
        let (secret, _) = ServerSecret::load_or_create(&cfg.secret_file).unwrap();
        let hash = store.join_token_hash().await.unwrap().expect("join token");
        assert!(hash.starts_with("hmac-sha256:"));
        assert_eq!(
            ensure_join_token(store.as_ref(), &secret).await.unwrap(),
            None
        );

        let hour = std::time::Duration::from_secs(3600);
        let (a, until) = rotate_join_token(store.as_ref(), &secret, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(until, None);
        prod.auth.verify_join_token(&a).await.unwrap();
        // With a grace the replaced token still admits; without one, nothing old does.
        let (b, until) = rotate_join_token(store.as_ref(), &secret, hour)
            .await
            .unwrap();
        assert!(until.is_some_and(|t| t > Utc::now()));
        prod.auth.verify_join_token(&a).await.unwrap();
        prod.auth.verify_join_token(&b).await.unwrap();
        let (c, _) = rotate_join_token(store.as_ref(), &secret, std::time::Duration::ZERO)
            .await
            .unwrap();
        let e = prod.auth.verify_join_token(&a).await.unwrap_err();
        assert!(e.message().starts_with("invalid join token"), "{e}");
        // The one just replaced is refused with the reason.
        let e = prod.auth.verify_join_token(&b).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(
            e.message()
                .starts_with("invalid join token: join token was rotated;"),
            "{e}"
        );
        prod.auth.verify_join_token(&c).await.unwrap();

        let token = add_user(store.as_ref(), &secret, "ann", Role::Admin)
            .await
            .unwrap();
        let u = store.get_user("ann").await.unwrap().unwrap();
        assert_ne!(u.token_hash, token);
        assert!(secret.verify(&token, &u.token_hash));
        assert!(add_user(store.as_ref(), &secret, "ann", Role::Viewer)
            .await
            .is_err());

        let bad_tls = SecurityConfig {
            tls_cert: Some(dir.path().join("missing.pem")),
            tls_key: Some(dir.path().join("missing.key")),
            ..cfg.clone()
        };
        assert!(matches!(
            prepare(&bad_tls, "127.0.0.1:1".parse().unwrap(), store, None).await,
            Err(SetupError::Tls(_))
        ));
    }
}
