//! Users of the client API and their roles, as the store keeps them.
//!
//! A user is a name, a [`Role`] and the keyed hash of its API token. The token itself is
//! never stored: the master hashes what a client presents (HMAC-SHA256 with a server
//! secret, see `cloudai_master::auth`) and looks the user up by that hash.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};

/// What a user may do. Each role includes everything the ones before it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads tasks, workers, logs and queue statistics.
    Viewer,
    /// Also enqueues tasks and cancels its own.
    Submitter,
    /// Everything, including cancelling others' tasks, the agent API and managing users.
    Admin,
}

impl Role {
    /// Every role, least to most privileged.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Submitter, Role::Admin];

    /// The lowercase name used on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                QueueError::invalid(
                    "role",
                    format!("unknown role {s:?} (use viewer, submitter or admin)"),
                )
            })
    }
}

/// One user of the client API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Unique name, recorded as `submitted_by` on the tasks the user enqueues.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// Keyed hash of the user's API token (never the token itself). Unique.
    pub token_hash: String,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
    /// The most its running tasks may hold at once; unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::quota::Quota>,
}

/// Longest user name accepted.
pub const MAX_USER_NAME_LEN: usize = 64;

/// A user name is 1..=64 characters of ASCII letters, digits, `.`, `_`, `-` and `@`,
/// starting with a letter or digit.
pub fn validate_user_name(name: &str) -> Result<()> {
    let bad = |reason: &str| Err(QueueError::invalid("user name", reason.to_string()));
    if name.is_empty() {
        return bad("empty user name");
    }
    if name.len() > MAX_USER_NAME_LEN {
        return bad("longer than 64 characters");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        return bad("only letters, digits, '.', '_', '-' and '@' are allowed");
    }
    Ok(())
}

/// A stored token hash must be non-empty printable ASCII without spaces (hashes are hex
/// with an algorithm prefix); this catches a caller passing something else by mistake.
pub fn validate_token_hash(hash: &str) -> Result<()> {
    if hash.len() < 16 || !hash.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(QueueError::invalid(
            "token hash",
            "expected a hash (at least 16 printable characters)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_order() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!(Role::Viewer < Role::Submitter && Role::Submitter < Role::Admin);
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn user_names_are_checked() {
        for ok in ["alice", "ci-bot", "a", "bob.smith@example", "7up_x"] {
            validate_user_name(ok).unwrap();
        }
        let long = "a".repeat(65);
        for bad in ["", "-x", ".x", "a b", "ä", "a/b", long.as_str()] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_hashes_are_checked() {
        validate_token_hash("hmac-sha256:0123456789abcdef").unwrap();
        assert!(validate_token_hash("short").is_err());
        assert!(validate_token_hash("has a space in it, long enough").is_err());
    }
}
