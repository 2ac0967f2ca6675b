//! API and join tokens: generation, and the keyed hash under which the store keeps them.
//!
//! Tokens are 256 random bits, hex-encoded behind a prefix that says what they are
//! (`cai_` for a user's API token, `caj_` for the worker join token), so a leaked token is
//! recognisable. The store keeps only `hmac-sha256:<hex>` of a token, keyed with the
//! [`ServerSecret`]: someone who reads the store (a backup, a dump of the `USERS`
//! collection) learns neither the tokens nor a way to test guesses without the secret.
//! HMAC is deterministic, so the master finds the user by the hash of what it is shown.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use ring::hmac;

/// Prefix of users' API tokens.
pub const API_TOKEN_PREFIX: &str = "cai_";
/// Prefix of the worker join token.
pub const JOIN_TOKEN_PREFIX: &str = "caj_";
/// Prefix of every stored hash, naming the algorithm.
pub const HASH_PREFIX: &str = "hmac-sha256:";
/// Random bytes in a token and in the server secret.
const RANDOM_BYTES: usize = 32;

/// Default location of the server secret: beside the default store, in the working
/// directory. Production masters point `--secret-file` at a path only they can read.
pub const DEFAULT_SECRET_FILE: &str = "cloudai.secret";

/// Why the server secret could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing the file failed.
    #[error("secret file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file exists but does not hold a secret this version wrote.
    #[error("secret file {path} is malformed: expected {expected} hex characters")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// How many hex characters a secret has.
        expected: usize,
    },
}

/// The master's HMAC key. Every master sharing a store must use the same secret, or the
/// tokens one created do not verify on another.
#[derive(Clone)]
pub struct ServerSecret {
    key: hmac::Key,
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl ServerSecret {
    /// A secret from raw bytes (tests, or operators who keep it elsewhere).
    pub fn from_bytes(bytes: &[u8]) -> ServerSecret {
        ServerSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// Loads the secret at `path`, or creates one there (mode 0600 on Unix) when the file
    /// does not exist. Returns the secret and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(ServerSecret, bool), SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = from_hex(text.trim()).filter(|b| b.len() == RANDOM_BYTES);
                match bytes {
                    Some(b) => Ok((ServerSecret::from_bytes(&b), false)),
                    None => Err(SecretError::Malformed {
                        path: path.to_path_buf(),
                        expected: RANDOM_BYTES * 2,
                    }),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let bytes = random_bytes();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        writeln!(f, "{}", to_hex(&bytes)).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        Ok((ServerSecret::from_bytes(&bytes), true))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        ServerSecret::load_or_create(path)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The stored form of `token`: `hmac-sha256:<64 hex>`.
    pub fn hash(&self, token: &str) -> String {
        let tag = hmac::sign(&self.key, token.as_bytes());
        format!("{HASH_PREFIX}{}", to_hex(tag.as_ref()))
    }

    /// True when `token` hashes to `stored`. The comparison runs in constant time.
    pub fn verify(&self, token: &str, stored: &str) -> bool {
        let Some(hex) = stored.strip_prefix(HASH_PREFIX) else {
            return false;
        };
        match from_hex(hex) {
            Some(tag) => hmac::verify(&self.key, token.as_bytes(), &tag).is_ok(),
            None => false,
        }
    }
}

/// A new user API token (`cai_` + 64 hex characters).
pub fn new_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", to_hex(&random_bytes()))
}

/// A new worker join token (`caj_` + 64 hex characters).
pub fn new_join_token() -> String {
    format!("{JOIN_TOKEN_PREFIX}{}", to_hex(&random_bytes()))
}

fn random_bytes() -> [u8; RANDOM_BYTES] {
    let mut b = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_long() {
        let a = new_api_token();
        let b = new_api_token();
        assert_ne!(a, b);
        assert!(a.starts_with(API_TOKEN_PREFIX));
        assert_eq!(a.len(), API_TOKEN_PREFIX.len() + 64);
        assert!(new_join_token().starts_with(JOIN_TOKEN_PREFIX));
    }

    #[test]
    fn hash_is_keyed_deterministic_and_not_the_token() {
        let s1 = ServerSecret::from_bytes(b"one");
        let s2 = ServerSecret::from_bytes(b"two");
        let t = new_api_token();
        let h = s1.hash(&t);
        assert_eq!(h, s1.hash(&t));
        assert_ne!(h, s2.hash(&t), "a different secret gives a different hash");
        assert!(h.starts_with(HASH_PREFIX));
        assert!(!h.contains(&t[API_TOKEN_PREFIX.len()..]));
        assert!(s1.verify(&t, &h));
        assert!(!s2.verify(&t, &h));
        assert!(!s1.verify("cai_wrong", &h));
        assert!(!s1.verify(&t, "plain"));
        assert!(!s1.verify(&t, "hmac-sha256:zz"));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let s = ServerSecret::from_bytes(b"Jefe");
        assert_eq!(
            s.hash("what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secret_file_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cloudai.secret");
        let (a, created) = ServerSecret::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = ServerSecret::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.hash("x"), b.hash("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(
            ServerSecret::load_or_create(&path),
            Err(SecretError::Malformed { .. })
        ));
    }
}
