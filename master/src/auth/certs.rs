//! `cloudai certs init DIR`: a private CA and the certificates a secure cluster needs, so
//! that TLS (and mTLS for workers) takes one command.
//!
//! Written to `DIR`: `ca.pem`/`ca.key` (the CA: keep `ca.key` offline), `master.pem`/
//! `master.key` (server certificate for `--tls-cert`/`--tls-key`, valid for localhost,
//! 127.0.0.1, ::1, this host's name and any extra names given), `worker.pem`/`worker.key`
//! (client certificate for workers under `--client-ca ca.pem`). Keys are ECDSA P-256,
//! files holding keys are mode 0600, and certificates are valid for 825 days.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Validity of every certificate made here.
pub const VALIDITY_DAYS: i64 = 825;

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating a key or signing a certificate failed (e.g. a malformed name).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing a file failed, or it exists already.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The files written, for the caller to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// CA certificate (`--ca`, `--client-ca`).
    pub ca_cert: PathBuf,
    /// CA key.
    pub ca_key: PathBuf,
    /// Master certificate (`--tls-cert`).
    pub master_cert: PathBuf,
    /// Master key (`--tls-key`).
    pub master_key: PathBuf,
    /// Worker client certificate (worker `--tls-cert`).
    pub worker_cert: PathBuf,
    /// Worker client key (worker `--tls-key`).
    pub worker_key: PathBuf,
}

/// Creates the CA and the master and worker certificates in `dir` (created if needed).
/// `master_names` are extra DNS names or IP addresses the master is reached by. Refuses
/// to overwrite existing files.
pub fn init(dir: &Path, master_names: &[String]) -> Result<CertFiles, CertError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = CertFiles {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        master_cert: dir.join("master.pem"),
        master_key: dir.join("master.key"),
        worker_cert: dir.join("worker.pem"),
        worker_key: dir.join("worker.key"),
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = params(Vec::new(), "cloudai CA")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Some(host) = hostname() {
        names.push(host);
    }
    for n in master_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let (master_cert, master_key) = leaf(
        names,
        "cloudai master",
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca_cert,
        &ca_key,
    )?;
    let (worker_cert, worker_key) = leaf(
        Vec::new(),
        "cloudai worker",
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca_cert,
        &ca_key,
    )?;

    write_new(&files.ca_cert, &ca_cert.pem(), false).map_err(io(&files.ca_cert))?;
    write_new(&files.ca_key, &ca_key.serialize_pem(), true).map_err(io(&files.ca_key))?;
    write_new(&files.master_cert, &master_cert, false).map_err(io(&files.master_cert))?;
    write_new(&files.master_key, &master_key, true).map_err(io(&files.master_key))?;
    write_new(&files.worker_cert, &worker_cert, false).map_err(io(&files.worker_cert))?;
    write_new(&files.worker_key, &worker_key, true).map_err(io(&files.worker_key))?;
    Ok(files)
}

fn params(names: Vec<String>, common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(names)?;
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.distinguished_name
        .push(DnType::OrganizationName, "cloudai");
    let today = Utc::now() - Duration::days(1);
    let until = today + Duration::days(VALIDITY_DAYS);
    p.not_before = rcgen::date_time_ymd(today.year(), today.month() as u8, today.day() as u8);
    p.not_after = rcgen::date_time_ymd(until.year(), until.month() as u8, until.day() as u8);
    Ok(p)
}

/// A certificate signed by the CA and its key, both as PEM.
fn leaf(
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut p = params(names, common_name)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, ca, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/etc/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && h.len() < 254).then(|| h.to_string())
}

pub(crate) fn write_new(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_two_leaves_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let files = init(&out, &["master.example".into()]).unwrap();
        for p in [&files.ca_cert, &files.master_cert, &files.worker_cert] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{p:?}");
        }
        for p in [&files.ca_key, &files.master_key, &files.worker_key] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.contains("PRIVATE KEY"), "{p:?}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{p:?}");
            }
        }
        // The PEM files load as tonic's TLS types.
        let _ = tonic::transport::Identity::from_pem(
            std::fs::read(&files.master_cert).unwrap(),
            std::fs::read(&files.master_key).unwrap(),
        );
        assert!(matches!(init(&out, &[]), Err(CertError::Io { .. })));
    }
}
