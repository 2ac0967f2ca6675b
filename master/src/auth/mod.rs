//! Authentication and authorization of the master's callers.
//!
//! - [`token`]: API and join tokens, the server secret, and the keyed hash the store keeps.
//! - [`roles`]: the permission matrix (viewer / submitter / admin) and each RPC's action.
//! - [`mode`]: loopback detection and the start-up decision between local-dev mode
//!   (no auth), required auth, and `--insecure`.

pub mod mode;
pub mod roles;
pub mod token;

pub use mode::{decide, is_loopback, AuthDecision, AuthFlags, AuthMode, Severity};
pub use roles::{allowed, cancel_action, rpc_rule, Action, RpcRule};
pub use token::{new_api_token, new_join_token, ServerSecret, DEFAULT_SECRET_FILE};
