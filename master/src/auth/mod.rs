//! Authentication and authorization of the master's callers.
//!
//! - [`token`]: API and join tokens, the server secret, and the keyed hash the store keeps.
//! - [`roles`]: the permission matrix (viewer / submitter / admin) and each RPC's action.
//! - [`mode`]: loopback detection and the start-up decision between local-dev mode
//!   (no auth), required auth, and `--insecure`.
//! - [`config`]: the master's auth and TLS flags.
//! - [`certs`]: a CA and master/worker certificates for `cloudai certs init`.
//! - [`pki`]: a certificate per worker (`certs issue`, bound to its id) and the revocation
//!   list (`certs revoke`, read by `--client-crl`).
//! - [`guard`]: the per-call checks and the tower layer that runs them.
//! - [`join`]: admitting a registering worker (join token with its grace, bound id).
//! - [`rotation`]: ending the streams of workers whose join token was rotated out.
//! - [`setup`]: security at start-up (mode, secret, join token, TLS) and operator actions.

pub mod certs;
pub mod config;
pub mod guard;
pub mod join;
pub mod mode;
pub mod pki;
pub mod roles;
pub mod rotation;
pub mod setup;
pub mod token;

pub use config::SecurityConfig;
pub use guard::{check_cancel, principal, submitter, Auth, AuthLayer, Principal};
pub use join::{auth_of, join_check, JoinCheck, JoinedWith};
pub use mode::{decide, is_loopback, AuthDecision, AuthFlags, AuthMode, Severity};
pub use roles::{allowed, cancel_action, rpc_rule, Action, RpcRule};
pub use token::{new_api_token, new_join_token, ServerSecret, DEFAULT_SECRET_FILE};
