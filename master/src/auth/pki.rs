//! Certificates after `certs init`: `cloudai certs issue NAME` signs a certificate of its
//! own for one worker (or one more master) with the CA in the folder, and `cloudai certs
//! revoke NAME` puts it on the folder's revocation list (`revoked.crl.pem`), which the
//! master reads with `--client-crl` (and reads again when the file changes).
//!
//! A worker's certificate names its worker id: the subject's common name is the id and
//! its organizational unit is [`WORKER_ID_UNIT`]. The master lets such a certificate
//! register only as that id. The shared `worker.pem` of `certs init` has no such unit and
//! may register as any id (it is for trying things out; give production workers their
//! own).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    Certificate, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};

use super::certs::{write_new, CertError, VALIDITY_DAYS};

/// The organizational unit that marks a certificate's common name as a worker id.
pub const WORKER_ID_UNIT: &str = "cloudai worker id";
/// The revocation list's file name in the CA folder.
pub const CRL_FILE: &str = "revoked.crl.pem";

/// What [`issue`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A worker's client certificate, bound to the worker id `NAME`.
    Worker,
    /// One more master's server certificate, valid for the given names.
    Master,
}

/// The files [`issue`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// `NAME.pem`.
    pub cert: PathBuf,
    /// `NAME.key` (mode 0600).
    pub key: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError {
    let path = path.to_path_buf();
    move |source| CertError::Io { path, source }
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> CertError {
    CertError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()),
    }
}

/// The CA of `ca_dir` (`ca.pem`, `ca.key`), ready to sign.
fn load_ca(ca_dir: &Path) -> Result<(Certificate, KeyPair), CertError> {
    let (cert_path, key_path) = (ca_dir.join("ca.pem"), ca_dir.join("ca.key"));
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key_path, e))?;
    let params =
        CertificateParams::from_ca_cert_pem(&cert_pem).map_err(|e| invalid(&cert_path, e))?;
    // Same subject and key: what it signs verifies against the CA on disk.
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

/// Signs a certificate named `name` with the CA in `ca_dir` and writes `NAME.pem` and
/// `NAME.key` there. A worker's is bound to the worker id `name`; a master's is valid for
/// `names` (localhost, 127.0.0.1 and ::1 are always added). Never overwrites.
pub fn issue(
    ca_dir: &Path,
    name: &str,
    purpose: Purpose,
    names: &[String],
) -> Result<Issued, CertError> {
    cloudai_queue::validate::validate_worker_id(name).map_err(|e| invalid(Path::new(name), e))?;
    let (ca, ca_key) = load_ca(ca_dir)?;
    let mut sans: Vec<String> = Vec::new();
    if purpose == Purpose::Master {
        sans = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for n in names {
            if !sans.contains(n) {
                sans.push(n.clone());
            }
        }
    }
    let mut p = CertificateParams::new(sans)?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "cloudai");
    if purpose == Purpose::Worker {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, WORKER_ID_UNIT);
    }
    let today = Utc::now() - Duration::days(1);
    p.not_before = day(today);
    p.not_after = day(today + Duration::days(VALIDITY_DAYS));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![match purpose {
        Purpose::Worker => ExtendedKeyUsagePurpose::ClientAuth,
        Purpose::Master => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca, &ca_key)?;
    let out = Issued {
        cert: ca_dir.join(format!("{name}.pem")),
        key: ca_dir.join(format!("{name}.key")),
    };
    write_new(&out.cert, &cert.pem(), false).map_err(io(&out.cert))?;
    write_new(&out.key, &key.serialize_pem(), true).map_err(io(&out.key))?;
    Ok(out)
}

/// Midnight UTC of `t`'s day (certificates start and end on whole days).
fn day(t: DateTime<Utc>) -> time::OffsetDateTime {
    rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
}

/// `t` to the second.
fn instant(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Puts `NAME.pem` of `ca_dir` on the folder's revocation list, signed by its CA, and
/// returns the list's path. Revoking twice changes nothing. The list is replaced whole
/// (written aside, then renamed), so a master reading it never sees half a file.
pub fn revoke(ca_dir: &Path, name: &str) -> Result<PathBuf, CertError> {
    let cert_path = ca_dir.join(format!("{name}.pem"));
    let pem = std::fs::read(&cert_path).map_err(io(&cert_path))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| invalid(&cert_path, e))?;
    let serial = pem
        .parse_x509()
        .map_err(|e| invalid(&cert_path, e))?
        .raw_serial()
        .to_vec();
    let crl_path = ca_dir.join(CRL_FILE);
    let (mut revoked, number) = read_crl(&crl_path)?;
    if revoked
        .iter()
        .any(|r| r.serial_number.as_ref() == serial.as_slice())
    {
        return Ok(crl_path);
    }
    let now = Utc::now();
    revoked.push(RevokedCertParams {
        serial_number: SerialNumber::from_slice(&serial),
        revocation_time: instant(now),
        reason_code: Some(RevocationReason::Unspecified),
        invalidity_date: None,
    });
    let (ca, ca_key) = load_ca(ca_dir)?;
    let crl = CertificateRevocationListParams {
        this_update: instant(now),
        next_update: day(now + Duration::days(VALIDITY_DAYS)),
        crl_number: SerialNumber::from((number + 1).to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &ca_key)?;
    let tmp = ca_dir.join(format!(".{CRL_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &crl.pem()?, false).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &crl_path).map_err(io(&crl_path))?;
    Ok(crl_path)
}

/// The entries and number of the revocation list at `path` (none yet: empty, 0).
fn read_crl(path: &Path) -> Result<(Vec<RevokedCertParams>, u64), CertError> {
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(path)(e)),
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| invalid(path, e))?;
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).map_err(|e| invalid(path, e))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| {
            let at = time::OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.raw_serial()),
                revocation_time: at,
                reason_code: Some(RevocationReason::Unspecified),
                invalidity_date: None,
            }
        })
        .collect();
    Ok((entries, number))
}

/// The worker id a client certificate (DER) is bound to, if it was issued for one.
pub fn bound_worker_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let marked = subject
        .iter_organizational_unit()
        .any(|ou| ou.as_str() == Ok(WORKER_ID_UNIT));
    if !marked {
        return None;
    }
    let id = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    id
}
