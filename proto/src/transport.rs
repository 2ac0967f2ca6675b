//! The transport conventions both ends of the protocol share: what a failed connection to
//! a master means ([`classify`], [`Problem`]), whether a port speaks TLS ([`speaks_tls`]),
//! the TLS server name of a URL ([`tls_domain`]), and the check that a key belongs to its
//! certificate ([`check_key_pair`]). The CLI and the worker use them to say *which* TLS
//! mistake was made instead of "transport error", and to stop on the permanent ones.

use std::error::Error as StdError;
use std::time::Duration;

use chrono::{DateTime, Utc};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError};

/// A connection problem that retrying will not cure, or that needs a different URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `http://` to a port that speaks TLS.
    PlainUrlTlsPort,
    /// `https://` to a port that does not speak TLS.
    TlsUrlPlainPort,
    /// The master's certificate failed our checks (`--ca`): the reason.
    MasterCertificate(String),
    /// The master refused the client certificate we presented: the reason.
    ClientCertificateRefused(String),
    /// The master requires a client certificate and we presented none.
    ClientCertificateRequired,
    /// The connection failed or closed in a way a TLS port also causes to a plain
    /// client (an h2 protocol error, a closed or reset connection): confirm with
    /// [`speaks_tls`] before saying so. The innermost error's own words.
    Http2Failure(String),
}

impl Problem {
    /// The one line a user reads, for a master at `url`.
    pub fn explain(&self, url: &str) -> String {
        match self {
            Problem::PlainUrlTlsPort => format!(
                "the master at {url} speaks TLS: use https://{} and pass --ca FILE (the CA that signed its certificate)",
                strip_scheme(url)
            ),
            Problem::TlsUrlPlainPort => format!(
                "the master at {url} does not speak TLS: use http://{}, or start the master with --tls-cert and --tls-key",
                strip_scheme(url)
            ),
            Problem::MasterCertificate(why) => format!(
                "the master at {url} presented a certificate this side does not accept: {why}"
            ),
            Problem::ClientCertificateRefused(why) => format!(
                "the master at {url} refused this side's client certificate (--tls-cert): {why}"
            ),
            Problem::ClientCertificateRequired => format!(
                "the master at {url} requires a client certificate (it runs with --client-ca): pass --tls-cert and --tls-key"
            ),
            Problem::Http2Failure(words) => format!("the connection to {url} failed: {words}"),
        }
    }

    /// True when the same connection will fail again the same way: stop, do not retry.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Problem::Http2Failure(_))
    }
}

/// What `err` (a connection or call error, walked through its sources) says about the
/// TLS set-up; `None` when it is not a TLS problem (refused, unreachable, timed out...).
pub fn classify(err: &(dyn StdError + 'static)) -> Option<Problem> {
    let mut cur = Some(err);
    let mut suspect = false;
    let mut innermost = err.to_string();
    while let Some(e) = cur {
        if let Some(p) = rustls_error(e).and_then(from_rustls) {
            return Some(p);
        }
        if let Some(p) = received_alert(e).and_then(from_alert) {
            return Some(p);
        }
        // hyper's errors are not public types; their texts are stable. A plain HTTP/2
        // client meets a TLS port in several ways, by timing.
        let text = e.to_string();
        suspect |= [
            "h2 protocol",
            "connection closed",
            "connection reset",
            "broken pipe",
            "operation was canceled",
        ]
        .iter()
        .any(|p| text.to_ascii_lowercase().contains(p));
        innermost = text;
        cur = e.source();
    }
    let top = err.to_string();
    suspect.then(|| {
        Problem::Http2Failure(if innermost == top {
            top
        } else {
            format!("{top}: {innermost}")
        })
    })
}

/// The rustls error in `e`, which io errors hide from `source()`.
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

/// An alert the peer sent, which tokio-rustls reports after the handshake only as text
/// ("received fatal alert: UnknownCA"): the text is rustls's `Display` of the alert.
fn received_alert(e: &(dyn StdError + 'static)) -> Option<AlertDescription> {
    let text = e.to_string();
    let name = text.split("received fatal alert: ").nth(1)?;
    let name = name.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
    use AlertDescription as A;
    [
        A::CertificateRequired,
        A::UnknownCA,
        A::DecryptError,
        A::CertificateExpired,
        A::CertificateRevoked,
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::DecodeError,
        A::ProtocolVersion,
        A::HandshakeFailure,
        A::AccessDenied,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
}

fn from_rustls(e: &rustls::Error) -> Option<Problem> {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => Some(Problem::MasterCertificate(certificate_reason(c))),
        E::AlertReceived(a) => from_alert(*a),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => Some(Problem::TlsUrlPlainPort),
        _ => None,
    }
}

/// What an alert from the master means: it judged our client certificate, or it did not
/// speak our TLS at all.
fn from_alert(a: AlertDescription) -> Option<Problem> {
    Some(match a {
            AlertDescription::CertificateRequired => Problem::ClientCertificateRequired,
            // A CA of the same name but another key fails the signature: DecryptError.
            AlertDescription::UnknownCA | AlertDescription::DecryptError => Problem::ClientCertificateRefused(
                "it is not signed by the CA the master trusts (its --client-ca)".into(),
            ),
            AlertDescription::CertificateExpired => {
                Problem::ClientCertificateRefused("it has expired".into())
            }
            AlertDescription::CertificateRevoked => {
                Problem::ClientCertificateRefused("it has been revoked".into())
            }
            AlertDescription::BadCertificate | AlertDescription::UnsupportedCertificate => {
                Problem::ClientCertificateRefused(
                    "it is not a client certificate the master accepts (a server certificate such as master.pem cannot be used by a client; use the one `cloudai certs init` wrote for workers)".into(),
                )
            }
            AlertDescription::DecodeError | AlertDescription::ProtocolVersion => {
                Problem::TlsUrlPlainPort
            }
            other => Problem::MasterCertificate(format!("the TLS handshake failed ({other:?})")),
    })
}

fn certificate_reason(c: &CertificateError) -> String {
    use CertificateError as C;
    match c {
        C::UnknownIssuer | C::BadSignature => {
            "it is not signed by the CA given with --ca (is --ca the ca.pem of the master's certificates?)".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired; make new certificates".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "it is not valid yet (check the clocks)".into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this host name; add the name with `cloudai certs init --name HOST`".into()
        }
        C::Revoked => "it has been revoked".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "it is not a server certificate".into()
        }
        other => format!("{other:?}"),
    }
}

/// True when the port at `url`'s host and port answers an HTTP/2 preface with a TLS
/// record, as a TLS server does; false for anything else or no answer within 2 s. It
/// blocks: async callers run it with `spawn_blocking` (it is only asked after a failure).
pub fn speaks_tls(url: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let addr = strip_scheme(url).trim_end_matches('/');
    let limit = Duration::from_secs(2);
    let probe = || -> std::io::Result<bool> {
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&sock, limit)?;
        s.set_read_timeout(Some(limit))?;
        s.set_write_timeout(Some(limit))?;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
        let mut head = [0u8; 2];
        s.read_exact(&mut head)?;
        // A TLS record: content type alert (21) or handshake (22), major version 3.
        Ok(matches!(head, [21 | 22, 3]))
    };
    probe().unwrap_or(false)
}

/// The name to check the master's certificate against, when the URL's own host would
/// not do: an IPv6 literal (`https://[::1]:50051`) without its brackets.
pub fn tls_domain(url: &str) -> Option<String> {
    let rest = strip_scheme(url);
    let host = rest.strip_prefix('[')?;
    host.split_once(']').map(|(ip, _)| ip.to_string())
}

fn strip_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Checks that the PEM private key `key` belongs to the first certificate of the PEM
/// chain `cert`; the error says what is wrong, for the caller to prefix with file names.
pub fn check_key_pair(cert: &[u8], key: &[u8]) -> Result<(), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("the key file holds no private key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the key is not usable: {e}"))?;
    match rustls::sign::CertifiedKey::new(chain, signing).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(_) => Err("the key does not belong to the certificate".into()),
    }
}

/// What a certificate says of itself, for start-up checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// May authenticate a TLS client (no extended key usage means any use).
    pub client_auth: bool,
    /// May authenticate a TLS server.
    pub server_auth: bool,
    /// The subject's common name, when it has one.
    pub common_name: Option<String>,
}

impl CertInfo {
    /// Why the certificate cannot be used `now`, if it cannot: expired or not valid yet,
    /// with the date.
    pub fn unusable_at(&self, now: DateTime<Utc>) -> Option<String> {
        let day = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        if now > self.not_after {
            Some(format!("it expired on {}", day(self.not_after)))
        } else if now < self.not_before {
            Some(format!(
                "it is not valid before {} (check this machine's clock)",
                day(self.not_before)
            ))
        } else {
            None
        }
    }
}

/// Reads the first certificate of a PEM file.
pub fn cert_info(pem: &[u8]) -> Result<CertInfo, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let v = cert.validity();
    let (client_auth, server_auth) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (
            eku.value.any || eku.value.client_auth,
            eku.value.any || eku.value.server_auth,
        ),
        _ => (true, true),
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Ok(CertInfo {
        not_before: time(v.not_before),
        not_after: time(v.not_after),
        client_auth,
        server_auth,
        common_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_literals_get_their_name_without_brackets() {
        assert_eq!(tls_domain("https://[::1]:50051").as_deref(), Some("::1"));
        assert_eq!(tls_domain("https://localhost:50051"), None);
        assert_eq!(tls_domain("https://127.0.0.1:1"), None);
    }

    #[test]
    fn rustls_errors_inside_io_errors_are_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let p = classify(&io).unwrap();
        assert!(matches!(&p, Problem::MasterCertificate(w) if w.contains("--ca")));
        assert!(p.is_permanent());
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(classify(&alert), Some(Problem::ClientCertificateRequired));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), None);
    }
}
