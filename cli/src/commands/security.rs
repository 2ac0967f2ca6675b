//! `cloudai token` and `cloudai certs`, and what `cloudai users` (in `users`) shares with
//! them: the operator commands of a secure cluster. Users and the join token are managed through the master's `AdminService`
//! (`--master`, an admin's `--token`), so they work from anywhere a client does. With
//! `--store` they write the store directly instead (keyed with the server secret of
//! `--secret-file`): that is for bootstrap and recovery only, the first admin before any
//! exists or a lost admin token, on the master's host. Tokens are printed once, on stdout
//! alone (scripts can capture them); nothing but their keyed hash is stored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use cloudai_master::auth::certs;
use cloudai_master::auth::pki::{self, Purpose};
use cloudai_master::auth::setup::rotate_join_token;
use cloudai_master::auth::{ServerSecret, DEFAULT_SECRET_FILE};
use cloudai_proto::pb;
use cloudai_queue::{open_store, QueueStore, Role, StoreOptions};

use crate::args::ConnectArgs;
use crate::client::Client;
use crate::exit::{CliError, CliResult, Kind};

/// Which master to ask or, for bootstrap and recovery, which store to write directly.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The master (an admin's --token when it requires auth).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Bootstrap or recovery only: write this store directly instead of asking a master
    /// (the first admin before any exists, or a lost admin token). Run it on the master's
    /// host with the master's --store and --secret-file.
    #[arg(long, value_name = "URI")]
    pub store: Option<String>,
    /// With --store: the master's server secret file (created when absent).
    #[arg(long, env = "CLOUDAI_SECRET_FILE", default_value = DEFAULT_SECRET_FILE, value_name = "PATH")]
    pub secret_file: PathBuf,
}

/// `cloudai token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Replace the worker join token; prints the new one once
    #[command(
        after_help = "During the grace, the old token still admits workers that reconnect \
(a network blip, a master restart) or start before they get the new one. When it is over, \
every master disconnects the workers that joined with the old token (they log \"join token \
was rotated; restart with the new --join-token\" and stop): restart them with the new token \
before then. After a leak, rotate with --grace 0: the old token stops at once.\n\n\
Examples:\n  cloudai token rotate --grace 1h\n  \
cloudai token rotate --grace 0     # the old token stops at once\n  \
cloudai token rotate --store sqlite:///var/lib/cloudai.db   # recovery, on the master's host"
    )]
    Rotate {
        /// How long the replaced token is still accepted (0: not at all).
        #[arg(long, default_value = "15m", value_parser = parse_grace)]
        grace: Duration,
        /// Master or store.
        #[command(flatten)]
        target: Target,
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

fn parse_grace(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::units::parse_duration(s).map_err(|e| e.0)
}

pub(super) fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

pub(super) fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::invalid(e.to_string())
}

/// The master's admin service, or the store and secret (`--store`).
pub(super) enum Via {
    Master(Admin),
    Store(Arc<dyn QueueStore>, ServerSecret),
}

impl Via {
    pub(super) async fn open(t: &Target) -> CliResult<Via> {
        let Some(uri) = &t.store else {
            return Ok(Via::Master(Admin::connect(&t.connect).await?));
        };
        let store = open_store(uri, StoreOptions::default())
            .await
            .map_err(|e| CliError::invalid(format!("cannot open the store: {e}")))?;
        let (secret, _) = ServerSecret::load_or_create(&t.secret_file)
            .map_err(|e| CliError::new(Kind::Other, e.to_string()))?;
        Ok(Via::Store(store, secret))
    }
}

/// A client of one master's `AdminService` (of a group, the first that answers: any
/// master serves these calls).
pub(super) struct Admin {
    url: String,
    pub(super) inner: crate::client::AdminClient,
}

/// What to do when the master cannot help (none runs yet, or no admin token is left).
const BOOTSTRAP_HINT: &str = "the first admin, or a lost admin token: on the master's host, \
`cloudai users add NAME --role admin --store URI --secret-file FILE`";

impl Admin {
    async fn connect(c: &ConnectArgs) -> CliResult<Admin> {
        let client = Client::connect_with(&c.master, &c.credentials())
            .await
            .map_err(hint)?;
        Ok(Admin {
            url: client.url().to_string(),
            inner: client.admin(),
        })
    }

    pub(super) fn status(&self, s: tonic::Status) -> CliError {
        let e = CliError::from_status(&self.url, &s);
        match s.code() {
            // Not a task: the name given is wrong, as with --store.
            tonic::Code::NotFound => CliError::invalid(e.message),
            _ => hint(e),
        }
    }
}

/// `e` with the way in for when no admin can ask the master.
fn hint(e: CliError) -> CliError {
    match e.kind {
        Kind::Unreachable | Kind::Unauthenticated => {
            CliError::new(e.kind, format!("{} ({BOOTSTRAP_HINT})", e.message))
        }
        _ => e,
    }
}

/// Runs `cloudai token ...`.
pub async fn token(cmd: TokenCmd) -> CliResult<i32> {
    let TokenCmd::Rotate { grace, target } = cmd;
    let (token, until) = match Via::open(&target).await? {
        Via::Master(mut a) => {
            let req = pb::RotateJoinTokenRequest {
                grace: Some(
                    prost_types::Duration::try_from(grace)
                        .map_err(|_| CliError::invalid("the grace is too long"))?,
                ),
            };
            match a.inner.rotate_join_token(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let until = r.previous_valid_until.and_then(|t| {
                        chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                    });
                    (r.join_token, until)
                }
                Err(s) => return Err(a.status(s)),
            }
        }
        Via::Store(store, secret) => rotate_join_token(store.as_ref(), &secret, grace)
            .await
            .map_err(failed)?,
    };
    let old = match until {
        Some(t) => format!(
            "the old token still admits workers until {} (--grace); then every master \
             disconnects the workers that joined with it, so restart them with the new one \
             before then",
            t.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => "the old token admits no worker from now on, and the workers that joined \
                 with it are disconnected within seconds"
            .to_string(),
    };
    eprintln!(
        "new worker join token, shown only this once (give it to workers with \
         CLOUDAI_JOIN_TOKEN or --join-token-file): {old}"
    );
    super::print(&format!("{token}\n"));
    Ok(0)
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
