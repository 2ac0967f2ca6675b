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
use cloudai_master::auth::pki::{self, Purpose};
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
        after_help = "Connected workers stay connected. During the grace, the old token \
still admits workers that reconnect (a network blip, a master restart) or start before they \
get the new one; after it, only the new token does. After a leak, rotate with --grace 0.\n\n\
Examples:\n  cloudai token rotate --store sqlite:///var/lib/cloudai.db\n  \
cloudai token rotate --grace 0     # the old token stops at once"
    )]
    Rotate {
        /// How long the replaced token is still accepted (0: not at all).
        #[arg(long, default_value = "15m", value_parser = parse_grace)]
        grace: std::time::Duration,
        /// Store and secret.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cloudai certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Create a CA and master/worker certificates in DIR
    #[command(
        after_help = "The master's certificate is valid for localhost, 127.0.0.1, ::1 \
and this machine's host name by itself; add every other name or address clients and workers \
use with --name. worker.pem is one certificate for any worker: give production workers their \
own with `cloudai certs issue`.\n\nExample:\n  cloudai certs init ./certs --name master.example.com"
    )]
    Init {
        /// Directory to write into (created; existing files are never overwritten).
        dir: PathBuf,
        /// Extra DNS name or IP address of the master (repeatable; localhost, 127.0.0.1,
        /// ::1 and the host name are always in).
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
    },
    /// Sign a certificate for one worker (bound to its id), or one more master
    #[command(
        after_help = "A worker's certificate may register only as the worker id it was \
issued for (the master checks). Files: DIR/NAME.pem and DIR/NAME.key.\n\nExamples:\n  \
cloudai certs issue gpu-01 --ca-dir ./certs\n  \
cloudai worker --id gpu-01 --tls-cert certs/gpu-01.pem --tls-key certs/gpu-01.key --ca certs/ca.pem ...\n  \
cloudai certs issue master-2 --master --name m2.example.com"
    )]
    Issue {
        /// The worker id (or, with --master, a file name for the master's certificate).
        name: String,
        /// The folder `certs init` wrote (its ca.pem and ca.key sign; output goes there).
        #[arg(long, default_value = "certs", value_name = "DIR")]
        ca_dir: PathBuf,
        /// A server certificate for another master, not a worker's.
        #[arg(long)]
        master: bool,
        /// With --master: a DNS name or IP address it is reached by (repeatable).
        #[arg(long = "name", value_name = "HOST", requires = "master")]
        names: Vec<String>,
    },
    /// Revoke a certificate issued in DIR: the master refuses it from then on
    #[command(
        after_help = "Writes DIR/revoked.crl.pem (signed by the CA). A master started \
with --client-crl DIR/revoked.crl.pem reads it again within seconds when it changes; \
a revoked worker's next connection fails its handshake.\n\nExample:\n  \
cloudai certs revoke gpu-01 --ca-dir ./certs"
    )]
    Revoke {
        /// The certificate's name (DIR/NAME.pem).
        name: String,
        /// The folder `certs init` wrote.
        #[arg(long, default_value = "certs", value_name = "DIR")]
        ca_dir: PathBuf,
    },
}

fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    crate::units::parse_duration(s).map_err(|e| e.0)
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
        TokenCmd::Rotate { grace, store } => {
            let (store, secret) = open(&store).await?;
            let (token, until) = rotate_join_token(store.as_ref(), &secret, grace)
                .await
                .map_err(failed)?;
            let old = match until {
                Some(t) => format!(
                    "the old token still admits workers until {} (--grace)",
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => "the old token admits no worker from now on".to_string(),
            };
            eprintln!(
                "new worker join token, shown only this once (give it to workers with \
                 CLOUDAI_JOIN_TOKEN or --join-token-file): connected workers stay connected; \
                 {old}; after that a worker that reconnects needs the new one"
            );
            super::print(&format!("{token}\n"));
            Ok(0)
        }
    }
}

/// Runs `cloudai certs ...`.
pub async fn certs(cmd: CertsCmd) -> CliResult<i32> {
    match cmd {
        CertsCmd::Issue {
            name,
            ca_dir,
            master,
            names,
        } => {
            let purpose = if master {
                Purpose::Master
            } else {
                Purpose::Worker
            };
            let f = pki::issue(&ca_dir, &name, purpose, &names).map_err(failed)?;
            let ca = ca_dir.join("ca.pem");
            let use_it = if master {
                format!(
                    "master: --tls-cert {} --tls-key {} --client-ca {}",
                    f.cert.display(),
                    f.key.display(),
                    ca.display()
                )
            } else {
                format!(
                    "worker: --id {name} --ca {} --tls-cert {} --tls-key {}",
                    ca.display(),
                    f.cert.display(),
                    f.key.display()
                )
            };
            super::print(&format!(
                "wrote {} and {}\n{use_it}\n",
                f.cert.display(),
                f.key.display()
            ));
            Ok(0)
        }
        CertsCmd::Revoke { name, ca_dir } => {
            let crl = pki::revoke(&ca_dir, &name).map_err(failed)?;
            super::print(&format!(
                "revoked {name}: {crl} lists it; masters started with --client-crl {crl} refuse it within seconds\n",
                crl = crl.display()
            ));
            Ok(0)
        }
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
