//! Whether the master requires credentials, decided once at start-up from where it
//! listens: only loopback → local-dev mode (no auth, said in the log); any other address →
//! auth required, unless the operator passes `--insecure` (a loud warning).

use std::net::{IpAddr, SocketAddr};

/// How the master treats credentials for its whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Loopback only: every local process may act; no tokens are checked.
    LocalDev,
    /// Workers need the join token and clients an API token with a fitting role.
    Required,
    /// A non-loopback address with auth explicitly turned off by `--insecure`.
    Insecure,
}

impl AuthMode {
    /// True when tokens are checked.
    pub fn enforced(self) -> bool {
        self == AuthMode::Required
    }
}

/// How loud a start-up notice is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Routine.
    Info,
    /// Needs the operator's attention.
    Warning,
}

/// The mode, and the line the master prints about it at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthDecision {
    /// The mode.
    pub mode: AuthMode,
    /// What the operator is told.
    pub notice: String,
    /// How loudly.
    pub severity: Severity,
}

/// The operator's choices that bear on auth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthFlags {
    /// `--insecure`: no auth even on a non-loopback address.
    pub insecure: bool,
    /// `--require-auth`: auth even on loopback (tests, shared hosts).
    pub require_auth: bool,
    /// `--tls-cert` is given: tokens cross the network encrypted.
    pub tls: bool,
}

/// True for addresses only this host can reach: 127.0.0.0/8, ::1, and IPv4-mapped
/// loopback. The unspecified address (0.0.0.0, ::) listens everywhere and is not loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Decides the auth mode for a master listening on `listen`. Fails when the flags
/// contradict each other.
pub fn decide(listen: SocketAddr, flags: AuthFlags) -> Result<AuthDecision, String> {
    if flags.insecure && flags.require_auth {
        return Err("--insecure and --require-auth contradict each other".into());
    }
    let loopback = is_loopback(listen.ip());
    let decision = if flags.require_auth {
        AuthDecision {
            mode: AuthMode::Required,
            notice: format!("auth required on {listen} (--require-auth)"),
            severity: Severity::Info,
        }
    } else if loopback {
        AuthDecision {
            mode: AuthMode::LocalDev,
            notice: format!(
                "local-dev mode: listening on loopback only ({listen}), authentication is off; \
                 listen on another address (e.g. --listen 0.0.0.0:50051) to require tokens"
            ),
            severity: Severity::Info,
        }
    } else if flags.insecure {
        AuthDecision {
            mode: AuthMode::Insecure,
            notice: format!(
                "INSECURE: --insecure turns authentication OFF on {listen}, which is not \
                 loopback: anyone who can reach this port can register workers, run \
                 containers and read every task's logs"
            ),
            severity: Severity::Warning,
        }
    } else {
        AuthDecision {
            mode: AuthMode::Required,
            notice: format!(
                "auth required on {listen}: workers need the join token, clients an API token"
            ),
            severity: Severity::Info,
        }
    };
    if decision.mode == AuthMode::Required && !loopback && !flags.tls {
        return Ok(AuthDecision {
            notice: format!(
                "NO TLS on {listen}, which is not loopback: auth is required, but API tokens \
                 and the worker join token cross the network in plain text, readable by \
                 anyone on the path; serve TLS with --tls-cert and --tls-key (`cloudai certs \
                 init` makes them)"
            ),
            severity: Severity::Warning,
            ..decision
        });
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_detection() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "192.168.1.5",
            "::ffff:10.0.0.1",
            "fe80::1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn every_combination_of_address_and_flags() {
        let none = AuthFlags::default();
        let insecure = AuthFlags {
            insecure: true,
            ..none
        };
        let require = AuthFlags {
            require_auth: true,
            ..none
        };
        let lo = addr("127.0.0.1:50051");
        let any = addr("0.0.0.0:50051");

        let d = decide(lo, none).unwrap();
        assert_eq!(d.mode, AuthMode::LocalDev);
        assert!(d.notice.contains("local-dev mode"));
        assert_eq!(decide(lo, insecure).unwrap().mode, AuthMode::LocalDev);
        assert_eq!(decide(lo, require).unwrap().mode, AuthMode::Required);

        let d = decide(any, none).unwrap();
        assert_eq!(d.mode, AuthMode::Required);
        assert_eq!(d.severity, Severity::Warning, "no TLS off loopback warns");
        assert!(d.notice.starts_with("NO TLS"), "{}", d.notice);
        let tls = AuthFlags { tls: true, ..none };
        let d = decide(any, tls).unwrap();
        assert_eq!((d.mode, d.severity), (AuthMode::Required, Severity::Info));
        let d = decide(any, require).unwrap();
        assert_eq!(
            d.severity,
            Severity::Warning,
            "--require-auth without TLS too"
        );
        assert_eq!(decide(lo, require).unwrap().severity, Severity::Info);
        let d = decide(any, insecure).unwrap();
        assert_eq!(d.mode, AuthMode::Insecure);
        assert_eq!(d.severity, Severity::Warning);
        assert!(d.notice.starts_with("INSECURE"));
        assert_eq!(decide(any, require).unwrap().mode, AuthMode::Required);

        let both = AuthFlags {
            insecure: true,
            require_auth: true,
            tls: false,
        };
        assert!(decide(any, both).is_err());
        assert!(AuthMode::Required.enforced());
        assert!(!AuthMode::LocalDev.enforced() && !AuthMode::Insecure.enforced());
    }
}
