//! The master's TLS listener. Handshakes are done here rather than inside tonic so that
//! each failed one is logged, with the peer's address and rustls's reason (a client
//! certificate from another CA, a plain `http://` client, a server certificate presented
//! as a client's...). The log is rate-limited: a burst of bad clients costs a few lines a
//! second, and the next line says how many were not shown. The client revocation list
//! (`--client-crl`) is read again when its file changes, without a restart.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed handshakes logged per second at most (burst of the same size).
const LOGGED_PER_SECOND: u32 = 5;
/// How long a connection whose handshake failed is kept to deliver the alert ([`linger`]).
const LINGER: Duration = Duration::from_secs(1);

/// Why the TLS settings could not be built; names the file.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct TlsSetupError {
    what: String,
    why: String,
}

fn err(what: impl Into<String>, why: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError {
        what: what.into(),
        why: why.to_string(),
    }
}

/// The files the TLS settings come from: the master's certificate chain and key, and,
/// for mTLS, the CA that client certificates are checked against and its revocation list.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
    /// `--client-ca`.
    pub client_ca: Option<PathBuf>,
    /// `--client-crl`: read again when it changes.
    pub client_crl: Option<PathBuf>,
}

/// How often the revocation list's file is checked for a change (on the next accept).
const CRL_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The server's TLS settings from `files`. A client certificate stays optional at the
/// handshake (the CLI has none); the worker service requires one (auth guard). A revoked
/// client certificate fails the handshake.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (cert, key) = (&files.cert, &files.key);
    let read = |p: &Path| std::fs::read(p).map_err(|e| err(p.display().to_string(), e));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert.display().to_string(), e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| err(key.display().to_string(), e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls", e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                let c = c.map_err(|e| err(ca.display().to_string(), e))?;
                roots.add(c).map_err(|e| err(ca.display().to_string(), e))?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .allow_unauthenticated();
            if let Some(crl) = files.client_crl.as_ref().filter(|p| p.exists()) {
                let crls = CertificateRevocationListDer::pem_slice_iter(&read(crl)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err(crl.display().to_string(), e))?;
                verifier = verifier.with_crls(crls);
            }
            let verifier = verifier
                .build()
                .map_err(|e| err(ca.display().to_string(), e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
        err(
            format!(
                "--tls-cert {} with --tls-key {}",
                cert.display(),
                key.display()
            ),
            e,
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS settings in force, rebuilt when the revocation list's file changes.
struct Current {
    files: TlsFiles,
    config: Arc<ServerConfig>,
    crl_changed: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

impl Current {
    fn new(files: TlsFiles, config: Arc<ServerConfig>) -> Self {
        let crl_changed = files.client_crl.as_deref().and_then(modified);
        Current {
            files,
            config,
            crl_changed,
            checked: std::time::Instant::now(),
        }
    }

    /// The acceptor to use now; reads the revocation list again if it changed. A list
    /// that does not load keeps the previous settings, and says so.
    fn acceptor(&mut self) -> TlsAcceptor {
        if let Some(crl) = self.files.client_crl.clone() {
            if self.checked.elapsed() >= CRL_CHECK_EVERY {
                self.checked = std::time::Instant::now();
                let now = modified(&crl);
                if now != self.crl_changed {
                    match server_config(&self.files) {
                        Ok(c) => {
                            self.config = c;
                            self.crl_changed = now;
                            tracing::info!(crl = %crl.display(), "client revocation list read again");
                        }
                        Err(e) => tracing::error!(
                            error = %e,
                            "the client revocation list changed but does not load; the previous one stays in force"
                        ),
                    }
                }
            }
        }
        TlsAcceptor::from(self.config.clone())
    }
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The connections `listener` accepts, each through a TLS handshake with `config`; failed
/// handshakes are logged and dropped. Ends when the receiving side is dropped. `config`
/// is `server_config(&files)`, built once at start so that a bad file stops the start.
pub fn incoming(
    listener: TcpListener,
    files: TlsFiles,
    config: Arc<ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let mut current = Current::new(files, config);
    let log = Arc::new(FailureLog::new());
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, do not spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, log) = (current.acceptor(), tx.clone(), log.clone());
            tokio::spawn(async move {
                let accept = acceptor.accept(tcp).into_fallible();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err((e, tcp))) => {
                        log.failed(peer, &e.to_string());
                        linger(tcp).await;
                    }
                    Err(_) => log.failed(peer, "no handshake within 10 s"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Closes a connection whose handshake failed so that the client reads the alert that
/// says why. With TLS 1.3 the client may already have sent its first bytes (its side of
/// the handshake was done) when the master refuses its certificate; closing with them
/// unread makes the kernel send a reset, which can reach the client before the alert
/// and leave it only "broken pipe", so a worker took a permanent mistake for a network
/// fault and retried forever. So: end our side (FIN after the alert), then read and
/// drop what comes until the client closes, for at most [`LINGER`].
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Rate-limited warnings about failed handshakes.
struct FailureLog {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl FailureLog {
    fn new() -> Self {
        let n = NonZeroU32::new(LOGGED_PER_SECOND).expect("non-zero");
        FailureLog {
            limiter: RateLimiter::direct(Quota::per_second(n)),
            suppressed: AtomicU64::new(0),
        }
    }

    fn failed(&self, peer: SocketAddr, reason: &str) {
        if self.limiter.check().is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let not_shown = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            peer = %peer,
            reason = %reason,
            not_shown,
            "tls handshake failed"
        );
    }
}
