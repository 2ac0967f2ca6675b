//! How the CLI proves who it is and checks whom it talks to: the API token sent as
//! `authorization: Bearer <token>` on every call (`--token` / `CLOUDAI_TOKEN`), and the CA
//! that must have signed the master's certificate for an `https://` master (`--ca` /
//! `CLOUDAI_CA`).

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::exit::{CliError, CliResult, Kind};

/// What the CLI presents to the master.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// API token (from `cloudai users add`).
    pub token: Option<String>,
    /// PEM CA of the master's certificate.
    pub ca: Option<PathBuf>,
}

impl Credentials {
    /// The URL to dial: a bare `HOST:PORT` gets `https://` when a CA is given, else
    /// `http://`.
    pub fn url(&self, url: &str) -> String {
        if url.contains("://") {
            url.to_string()
        } else if self.ca.is_some() {
            format!("https://{url}")
        } else {
            format!("http://{url}")
        }
    }

    /// `endpoint` with TLS when the URL is `https://`, which needs `--ca`.
    pub fn tls(&self, endpoint: Endpoint, url: &str) -> CliResult<Endpoint> {
        let https = url.starts_with("https://");
        match (&self.ca, https) {
            (None, false) => Ok(endpoint),
            (None, true) => Err(CliError::invalid(
                "an https:// master needs --ca FILE (or CLOUDAI_CA): the CA that signed its certificate",
            )),
            (Some(_), false) => Err(CliError::invalid(format!(
                "--ca is set, so the master URL must be https:// (got {url})"
            ))),
            (Some(ca), true) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    CliError::invalid(format!("cannot read --ca {}: {e}", ca.display()))
                })?;
                let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
                if let Some(name) = cloudai_proto::transport::tls_domain(url) {
                    tls = tls.domain_name(name);
                }
                endpoint
                    .tls_config(tls)
                    .map_err(|e| CliError::invalid(format!("tls: {e}")))
            }
        }
    }

    /// The interceptor adding the token to every call.
    pub fn bearer(&self) -> CliResult<Bearer> {
        match &self.token {
            None => Ok(Bearer(None)),
            Some(t) if t.trim().is_empty() => Err(CliError::new(
                Kind::Unauthenticated,
                "the API token is empty: --token or CLOUDAI_TOKEN is set to nothing; pass the \
                 token `cloudai users add` printed, or unset CLOUDAI_TOKEN on an open master",
            )),
            Some(t) => format!("Bearer {}", t.trim())
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| {
                    CliError::invalid("the API token has characters a header cannot hold")
                }),
        }
    }
}

static PROCESS_DEFAULT: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();

/// Sets the credentials of clients made without explicit ones (the master's own shell).
/// Only the first call counts.
pub fn set_process_default(creds: Credentials) {
    let _ = PROCESS_DEFAULT.set(creds);
}

/// The credentials set by [`set_process_default`], or none.
pub fn process_default() -> Credentials {
    PROCESS_DEFAULT.get().cloned().unwrap_or_default()
}

/// Adds `authorization: Bearer <token>` to each request (nothing without a token).
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn urls_tls_and_bearer() {
        let none = Credentials::default();
        assert_eq!(none.url("m:1"), "http://m:1");
        let with_ca = Credentials {
            ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(with_ca.url("m:1"), "https://m:1");
        assert_eq!(with_ca.url("http://m:1"), "http://m:1");

        let ep = || Endpoint::from_static("http://m:1");
        assert!(none.tls(ep(), "http://m:1").is_ok());
        assert!(none.tls(ep(), "https://m:1").is_err());
        assert!(with_ca.tls(ep(), "http://m:1").is_err());
        let e = with_ca.tls(ep(), "https://m:1").err().unwrap().to_string();
        assert!(e.contains("cannot read --ca ca.pem"), "{e}");

        let mut b = Credentials {
            token: Some("cai_x".into()),
            ..Default::default()
        }
        .bearer()
        .unwrap();
        let r = b.call(Request::new(())).unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer cai_x");
        let mut nobody = none.bearer().unwrap();
        assert!(nobody
            .call(Request::new(()))
            .unwrap()
            .metadata()
            .get("authorization")
            .is_none());
    }
}
