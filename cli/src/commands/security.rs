//! `cloudai users`, `cloudai token` and `cloudai certs`: the operator commands of a secure
//! cluster. Users and the join token are written straight into the store (with the
//! master's server secret keying the hashes), so they work before any admin exists and
//! while no master runs; run them where the store and the secret file are reachable.
//! Tokens are printed once, on stdout alone (scripts can capture them); nothing but
//! their keyed hash is stored.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use cloudai_master::auth::certs;
use cloudai_master::auth::setup::{add_user, rotate_join_token, SetupError};
use cloudai_master::auth::{ServerSecret, DEFAULT_SECRET_FILE};
use cloudai_queue::{open_store, QueueError, QueueStore, Role, StoreOptions};

use crate::exit::{CliError, CliResult, Kind};

/// Where the store and the server secret are (the same flags and defaults as the master).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The master's store URI.
    #[arg(long, env = "CLOUDAI_STORE", default_value = cloudai_queue::DEFAULT_STORE_URI)]
    pub store: String,
    /// The master's server secret file (created when absent).
    #[arg(long, env = "CLOUDAI_SECRET_FILE", default_value = DEFAULT_SECRET_FILE)]
    pub secret_file: PathBuf,
}

/// `cloudai users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Add a user; prints its API token once
    #[command(after_help = "Example:\n  cloudai users add alice --role submitter")]
    Add {
        /// The user's name (recorded on the tasks it submits).
        name: String,
        /// viewer (read), submitter (also enqueue and cancel own tasks) or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Store and secret.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users and their roles
    List {
        /// Store and secret.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a user (its token stops working at once)
    Remove {
        /// The user's name.
        name: String,
        /// Store and secret.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cloudai token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Replace the worker join token; prints the new one once
    #[command(
        after_help = "Example:\n  cloudai token rotate --store sqlite:///var/lib/cloudai.db"
    )]
    Rotate {
        /// Store and secret.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cloudai certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Create a CA and master/worker certificates in DIR
    #[command(after_help = "Example:\n  cloudai certs init ./certs --name master.example.com")]
    Init {
        /// Directory to write into (created; existing files are never overwritten).
        dir: PathBuf,
        /// Extra DNS name or IP address of the master (repeatable).
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

async fn open(a: &StoreArgs) -> CliResult<(Arc<dyn QueueStore>, ServerSecret)> {
    let store = open_store(&a.store, StoreOptions::default())
        .await
        .map_err(|e| CliError::invalid(format!("cannot open the store: {e}")))?;
    let (secret, _) = ServerSecret::load_or_create(&a.secret_file)
        .map_err(|e| CliError::new(Kind::Other, e.to_string()))?;
    Ok((store, secret))
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::invalid(e.to_string())
}

/// Runs `cloudai users ...`.
pub async fn users(cmd: UsersCmd) -> CliResult<i32> {
    match cmd {
        UsersCmd::Add { name, role, store } => {
            let (store, secret) = open(&store).await?;
            let token = add_user(store.as_ref(), &secret, &name, role)
                .await
                .map_err(|e| match e {
                    SetupError::Store(e @ QueueError::UserExists(_)) => {
                        CliError::new(Kind::Conflict, e.to_string())
                    }
                    e => failed(e),
                })?;
            eprintln!(
                "user {name} ({role}) added; its API token is shown only this once: clients \
                 pass it with --token or CLOUDAI_TOKEN"
            );
            super::print(&format!("{token}\n"));
            Ok(0)
        }
        UsersCmd::List { store } => {
            let (store, _) = open(&store).await?;
            let users = store.list_users().await.map_err(failed)?;
            let mut out = String::from("NAME\tROLE\tCREATED\n");
            for u in users {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    u.name,
                    u.role,
                    u.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            super::print(&out);
            Ok(0)
        }
        UsersCmd::Remove { name, store } => {
            let (store, _) = open(&store).await?;
            if !store.remove_user(&name).await.map_err(failed)? {
                return Err(CliError::invalid(format!("no user named {name:?}")));
            }
            eprintln!("user {name} removed");
            Ok(0)
        }
    }
}

/// Runs `cloudai token ...`.
pub async fn token(cmd: TokenCmd) -> CliResult<i32> {
    match cmd {
        TokenCmd::Rotate { store } => {
            let (store, secret) = open(&store).await?;
            let token = rotate_join_token(store.as_ref(), &secret)
                .await
                .map_err(failed)?;
            eprintln!(
                "new worker join token, shown only this once: connected workers stay \
                 connected; new ones need it (--join-token or CLOUDAI_JOIN_TOKEN)"
            );
            super::print(&format!("{token}\n"));
            Ok(0)
        }
    }
}

/// Runs `cloudai certs ...`.
pub async fn certs(cmd: CertsCmd) -> CliResult<i32> {
    match cmd {
        CertsCmd::Init { dir, names } => {
            let f = certs::init(&dir, &names).map_err(failed)?;
            super::print(&format!(
                "wrote {ca} (CA; keep {ca_key} offline)\n\
                 master: --tls-cert {mc} --tls-key {mk} --client-ca {ca}\n\
                 worker: --master https://HOST:50051 --ca {ca} --tls-cert {wc} --tls-key {wk}\n\
                 cli:    --master https://HOST:50051 --ca {ca}\n",
                ca = f.ca_cert.display(),
                ca_key = f.ca_key.display(),
                mc = f.master_cert.display(),
                mk = f.master_key.display(),
                wc = f.worker_cert.display(),
                wk = f.worker_key.display(),
            ));
            Ok(0)
        }
    }
}
