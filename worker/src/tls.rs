//! TLS to the master: the worker verifies the master's certificate against `--ca`, and
//! presents its own client certificate (`--tls-cert`/`--tls-key`) when the master asks
//! for one (mTLS with `--client-ca` on the master).

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use cloudai_proto::transport::{cert_info, check_key_pair, speaks_tls, Problem};

use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};

/// The TLS settings `config` asks for: `None` for a plain `http://` master. An
/// `https://` master needs `--ca`; a client certificate needs both its files.
pub fn client_tls(config: &WorkerConfig) -> Result<Option<ClientTlsConfig>> {
    let urls = config.master_urls();
    let https = urls.iter().any(|u| u.starts_with("https://"));
    if https && !urls.iter().all(|u| u.starts_with("https://")) {
        return Err(WorkerError::config(
            "master",
            format!(
                "the master URLs mix https:// and http:// ({}); use one scheme for the group",
                config.master
            ),
        ));
    }
    let Some(ca) = &config.ca else {
        if https {
            return Err(WorkerError::config(
                "ca",
                "an https:// master needs --ca (the CA that signed the master's certificate)",
            ));
        }
        if config.tls_cert.is_some() {
            return Err(WorkerError::config(
                "tls-cert",
                "a client certificate needs --ca",
            ));
        }
        return Ok(None);
    };
    if !https {
        return Err(WorkerError::config(
            "master",
            format!(
                "--ca is set, so the master URL must be https:// (got {})",
                config.master
            ),
        ));
    }
    let read = |field: &'static str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| WorkerError::config(field, format!("{}: {e}", path.display())))
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca", ca)?));
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let (cert_pem, key_pem) = (read("tls-cert", cert)?, read("tls-key", key)?);
            check_client_cert(cert, &cert_pem)?;
            check_key_pair(&cert_pem, &key_pem).map_err(|why| {
                WorkerError::config(
                    "tls-key",
                    format!(
                        "--tls-key {} does not fit --tls-cert {}: {why}",
                        key.display(),
                        cert.display()
                    ),
                )
            })?;
            tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
        }
        (None, None) => {}
        _ => {
            return Err(WorkerError::config(
                "tls-cert",
                "--tls-cert and --tls-key go together",
            ))
        }
    }
    Ok(Some(tls))
}

/// A client certificate this worker can present: valid now and allowed for clients.
fn check_client_cert(path: &std::path::Path, pem: &[u8]) -> Result<()> {
    let bad = |why: String| WorkerError::config("tls-cert", format!("{}: {why}", path.display()));
    let info = cert_info(pem).map_err(bad)?;
    if let Some(why) = info.unusable_at(chrono::Utc::now()) {
        return Err(bad(format!(
            "{why}; get a new one (`cloudai certs issue WORKER_ID`)"
        )));
    }
    if !info.client_auth {
        return Err(bad(
            "it is not a client certificate (it may only authenticate servers: the \
             master's?); use the worker's certificate from `cloudai certs init` or \
             `cloudai certs issue`"
                .into(),
        ));
    }
    Ok(())
}

/// `endpoint` (the master at `url`) with the TLS settings of `config` applied.
pub fn apply(endpoint: Endpoint, url: &str, config: &WorkerConfig) -> Result<Endpoint> {
    match client_tls(config)? {
        Some(mut tls) => {
            if let Some(name) = cloudai_proto::transport::tls_domain(url) {
                tls = tls.domain_name(name);
            }
            endpoint
                .tls_config(tls)
                .map_err(|e| WorkerError::config("ca", e.to_string()))
        }
        None => Ok(endpoint),
    }
}

/// `err` from a session with the master at `url`, its TLS problem located and, for an
/// HTTP/2 failure on an `http://` URL, confirmed: when the port speaks TLS the URL's
/// scheme is wrong, which no retry cures.
pub(crate) async fn confirm(err: WorkerError, url: &str) -> WorkerError {
    match err.at(url) {
        WorkerError::Tls {
            url,
            problem: Problem::Http2Failure(words),
        } if url.starts_with("http://") => {
            let probe = url.clone();
            let tls = tokio::task::spawn_blocking(move || speaks_tls(&probe))
                .await
                .unwrap_or(false);
            WorkerError::Tls {
                url,
                problem: if tls {
                    Problem::PlainUrlTlsPort
                } else {
                    Problem::Http2Failure(words)
                },
            }
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_must_fit_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();

        let plain = WorkerConfig::new("http://m:1");
        assert!(client_tls(&plain).unwrap().is_none());

        let https_no_ca = WorkerConfig::new("https://m:1");
        assert!(client_tls(&https_no_ca).is_err());

        let mut http_with_ca = WorkerConfig::new("http://m:1");
        http_with_ca.ca = Some(ca.clone());
        assert!(client_tls(&http_with_ca).is_err());

        let mut ok = WorkerConfig::new("https://m:1");
        ok.ca = Some(ca.clone());
        assert!(client_tls(&ok).unwrap().is_some());

        let mut half = ok.clone();
        half.tls_cert = Some(ca.clone());
        assert!(client_tls(&half).is_err());

        let mut missing = ok.clone();
        missing.ca = Some(dir.path().join("nope.pem"));
        let e = client_tls(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }
}
