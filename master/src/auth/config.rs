//! [`SecurityConfig`]: the master's auth and TLS flags, flattened into `MasterConfig`.
//! Every flag has a `CLOUDAI_*` variable; defaults are documented on each field.

use std::fmt;
use std::path::PathBuf;

use super::token::DEFAULT_SECRET_FILE;

/// Auth and transport security of the master.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct SecurityConfig {
    /// Serve without authentication on a non-loopback address. Prints a loud warning;
    /// for trusted networks only. Default: off (auth is required off loopback).
    #[arg(long, env = "CLOUDAI_INSECURE")]
    pub insecure: bool,

    /// Require tokens even when listening on loopback only (shared hosts, tests).
    /// Default: off (loopback is local-dev mode, without auth).
    #[arg(long, env = "CLOUDAI_REQUIRE_AUTH", conflicts_with = "insecure")]
    pub require_auth: bool,

    /// File holding the server secret that keys the hashes of stored tokens; created
    /// (mode 0600) when absent. Masters sharing a store must share this file.
    #[arg(long, env = "CLOUDAI_SECRET_FILE", default_value = DEFAULT_SECRET_FILE)]
    pub secret_file: PathBuf,

    /// PEM certificate (chain) of the master: serve gRPC over TLS. Needs --tls-key.
    #[arg(long, env = "CLOUDAI_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "CLOUDAI_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA that signs worker client certificates: workers must present one (mTLS).
    /// Clients (the CLI) may connect without one. Needs --tls-cert.
    #[arg(long, env = "CLOUDAI_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,

    /// PEM revocation list (CRL) of --client-ca: a worker whose certificate is on it is
    /// refused at the handshake. `cloudai certs revoke NAME` writes it (revoked.crl.pem);
    /// the master reads it again within seconds when the file changes (or appears: a
    /// list not written yet revokes nothing).
    #[arg(
        long,
        env = "CLOUDAI_CLIENT_CRL",
        requires = "client_ca",
        value_name = "PATH"
    )]
    pub client_crl: Option<PathBuf>,

    /// An admin token that exists only in this process's memory, for the master's own
    /// shell when auth is required. Never stored.
    #[arg(skip)]
    pub shell_token: Option<ShellToken>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            insecure: false,
            require_auth: false,
            secret_file: PathBuf::from(DEFAULT_SECRET_FILE),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            client_crl: None,
            shell_token: None,
        }
    }
}

impl SecurityConfig {
    /// Checks the TLS files before anything starts: each is readable and the key belongs
    /// to the certificate. The error names the files.
    pub fn check_files(&self) -> Result<(), String> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let (cert_pem, key_pem) = (read("--tls-cert", cert)?, read("--tls-key", key)?);
            let info = cloudai_proto::transport::cert_info(&cert_pem)
                .map_err(|why| format!("--tls-cert {}: {why}", cert.display()))?;
            if let Some(why) = info.unusable_at(chrono::Utc::now()) {
                return Err(format!(
                    "--tls-cert {}: {why}; make new certificates (`cloudai certs issue` or \
                     `cloudai certs init`)",
                    cert.display()
                ));
            }
            if !info.server_auth {
                return Err(format!(
                    "--tls-cert {} is not a server certificate (it may only authenticate \
                     clients: a worker's?); use master.pem from `cloudai certs init`",
                    cert.display()
                ));
            }
            cloudai_proto::transport::check_key_pair(&cert_pem, &key_pem).map_err(|why| {
                format!(
                    "--tls-key {} does not fit --tls-cert {}: {why}",
                    key.display(),
                    cert.display()
                )
            })?;
        }
        if let Some(ca) = &self.client_ca {
            read("--client-ca", ca)?;
        }
        if let Some(crl) = &self.client_crl {
            // Not there yet is fine (nothing revoked); there but unreadable is not.
            if crl.exists() {
                read("--client-crl", crl)?;
            }
        }
        Ok(())
    }
}

/// A token kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct ShellToken(pub String);

impl fmt::Debug for ShellToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShellToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: SecurityConfig,
    }

    #[test]
    fn defaults_and_flag_rules() {
        assert_eq!(
            Cli::try_parse_from(["x"]).unwrap().s,
            SecurityConfig::default()
        );
        let s = Cli::try_parse_from([
            "x",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--client-ca",
            "ca.pem",
            "--require-auth",
        ])
        .unwrap()
        .s;
        assert_eq!(s.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(s.require_auth);
        assert!(Cli::try_parse_from(["x", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["x", "--client-ca", "ca.pem"]).is_err());
        assert!(Cli::try_parse_from(["x", "--insecure", "--require-auth"]).is_err());
        assert_eq!(
            format!("{:?}", ShellToken("cai_secret".into())),
            "ShellToken(..)"
        );
    }
}
