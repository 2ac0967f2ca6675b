//! `cloudai users`: API users, their roles and quotas, managed through the master's
//! `AdminService` or, for bootstrap and recovery, straight in the store (`--store`; see
//! `security` for both ways in).

use chrono::{DateTime, Utc};
use clap::Subcommand;
use cloudai_master::auth::setup::add_user_record;
use cloudai_proto::pb;
use cloudai_queue::{QueueError, Quota, Role};
use serde::Serialize;

use super::security::{failed, parse_role, Target, Via};
use crate::args::OutputArgs;
use crate::exit::{CliError, CliResult, Kind};
use crate::output::{self, OutputFormat};
use crate::units::{format_bytes, format_cpu, parse_cpu, parse_memory};

/// How a quota is written on the command line.
const QUOTA_HELP: &str = "A quota limits what a user's assigned and running tasks reserve \
together: QUOTA is a comma-separated list of cpu=CORES (16, 0.5, 500m), memory=SIZE (64G), \
gpus=N and running=N (tasks at once); a limit left out is unlimited, and `none` removes \
the quota. Over its quota a task is not refused: it waits with reason Quota until enough \
of the user's tasks have ended.";

/// `cloudai users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Add a user; prints its API token once
    #[command(after_help = format!("{QUOTA_HELP}\n\nExamples:\n  \
cloudai users add alice --role submitter --master https://m1:50051 --token $ADMIN_TOKEN\n  \
cloudai users add ci --role submitter --quota cpu=16,memory=64G,gpus=2,running=100\n  \
cloudai users add root --role admin --store sqlite:///var/lib/cloudai.db --secret-file /var/lib/cloudai.secret\n    \
# bootstrap: the first admin, written into the store on the master's host"))]
    Add {
        /// The user's name (recorded on the tasks it submits).
        name: String,
        /// viewer (read), submitter (also enqueue and cancel own tasks) or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Its quota, e.g. cpu=16,memory=64G,gpus=2,running=100 (default: none).
        #[arg(long, value_parser = parse_quota, value_name = "QUOTA")]
        quota: Option<Quota>,
        /// Master or store.
        #[command(flatten)]
        target: Target,
    },
    /// Set or remove a user's quota
    #[command(after_help = format!("{QUOTA_HELP} The leader applies a change at its next \
dispatch pass, at once through it and within about a second through another master.\n\n\
Examples:\n  cloudai users quota ci cpu=16,memory=64G,gpus=2,running=100\n  \
cloudai users quota ci running=10     # only the number of tasks at once\n  \
cloudai users quota ci none"))]
    Quota {
        /// The user's name.
        name: String,
        /// The limits, or `none`.
        #[arg(value_parser = parse_quota, value_name = "QUOTA")]
        quota: Quota,
        /// Master or store.
        #[command(flatten)]
        target: Target,
    },
    /// List users, their roles and quotas
    #[command(after_help = "Examples:\n  cloudai users list\n  cloudai users list --output json")]
    List {
        /// Master or store.
        #[command(flatten)]
        target: Target,
        /// Format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove a user (its token stops working at once, on every master)
    #[command(after_help = "Example:\n  cloudai users remove alice")]
    Remove {
        /// The user's name.
        name: String,
        /// Master or store.
        #[command(flatten)]
        target: Target,
    },
}

/// Parses `cpu=16,memory=64G,gpus=2,running=100` (any subset) or `none`.
pub fn parse_quota(s: &str) -> Result<Quota, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(Quota::default());
    }
    let mut q = Quota::default();
    for item in t.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "invalid quota item {item:?}: expected KEY=VALUE with KEY one of cpu, memory, \
                 gpus, running (or the whole quota `none`)"
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        let count = |what: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("invalid quota {what} {v:?}: expected a whole number"))
        };
        let taken = match k {
            "cpu" => q
                .cpu_millis
                .replace(parse_cpu(v).map_err(|e| e.0)?)
                .is_some(),
            "memory" => q
                .memory_bytes
                .replace(parse_memory(v).map_err(|e| e.0)?)
                .is_some(),
            "gpus" => q.gpus.replace(count("gpus")?).is_some(),
            "running" => q.running.replace(count("running")?).is_some(),
            _ => {
                return Err(format!(
                    "unknown quota limit {k:?}: use cpu, memory, gpus or running"
                ))
            }
        };
        if taken {
            return Err(format!("quota limit {k:?} given twice"));
        }
    }
    Ok(q)
}

/// `q` as `parse_quota` reads it back: `cpu=16,memory=64GiB,running=100`, or `-`.
pub fn format_quota(q: Option<&Quota>) -> String {
    let Some(q) = q.copied().and_then(Quota::limited) else {
        return "-".into();
    };
    let mut parts = Vec::new();
    if let Some(c) = q.cpu_millis {
        parts.push(format!("cpu={}", format_cpu(c)));
    }
    if let Some(m) = q.memory_bytes {
        parts.push(format!("memory={}", format_bytes(m)));
    }
    if let Some(g) = q.gpus {
        parts.push(format!("gpus={g}"));
    }
    if let Some(r) = q.running {
        parts.push(format!("running={r}"));
    }
    parts.join(",")
}

/// A user as `users list` shows it.
#[derive(Debug, Serialize)]
struct UserView {
    name: String,
    role: String,
    created_at: Option<DateTime<Utc>>,
    /// Unset: no quota.
    quota: Option<Quota>,
}

impl From<pb::UserInfo> for UserView {
    fn from(u: pb::UserInfo) -> Self {
        UserView {
            name: u.name,
            role: u.role,
            created_at: u
                .created_at
                .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
            quota: cloudai_proto::convert::users::quota_of(u.quota),
        }
    }
}

impl From<cloudai_queue::UserRecord> for UserView {
    fn from(u: cloudai_queue::UserRecord) -> Self {
        UserView {
            name: u.name,
            role: u.role.to_string(),
            created_at: Some(u.created_at),
            quota: u.quota.and_then(Quota::limited),
        }
    }
}

fn users_text(users: &[UserView], format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return output::json(users);
    }
    let mut out = String::from("NAME\tROLE\tCREATED\tQUOTA\n");
    for u in users {
        let created = u
            .created_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "-".into());
        let quota = format_quota(u.quota.as_ref());
        out.push_str(&format!("{}\t{}\t{created}\t{quota}\n", u.name, u.role));
    }
    out
}

/// Runs `cloudai users ...`.
pub async fn users(cmd: UsersCmd) -> CliResult<i32> {
    match cmd {
        UsersCmd::Add {
            name,
            role,
            quota,
            target,
        } => {
            let quota = quota.and_then(Quota::limited);
            let token = match Via::open(&target).await? {
                Via::Master(mut a) => {
                    let req = pb::AddUserRequest {
                        name: name.clone(),
                        role: role.as_str().to_string(),
                        quota: quota.map(Into::into),
                    };
                    match a.inner.add_user(req).await {
                        Ok(r) => r.into_inner().token,
                        Err(s) => return Err(a.status(s)),
                    }
                }
                Via::Store(store, secret) => {
                    add_user_record(store.as_ref(), &secret, &name, role, quota)
                        .await
                        .map_err(|e| match e {
                            e @ QueueError::UserExists(_) => {
                                CliError::new(Kind::Conflict, e.to_string())
                            }
                            e => failed(e),
                        })?
                        .1
                }
            };
            eprintln!(
                "user {name} ({role}, quota {}) added; its API token is shown only this once: \
                 clients pass it with --token or CLOUDAI_TOKEN",
                format_quota(quota.as_ref())
            );
            super::print(&format!("{token}\n"));
            Ok(0)
        }
        UsersCmd::Quota {
            name,
            quota,
            target,
        } => {
            let quota = quota.limited();
            match Via::open(&target).await? {
                Via::Master(mut a) => {
                    let req = pb::SetUserQuotaRequest {
                        name: name.clone(),
                        quota: quota.map(Into::into),
                    };
                    if let Err(s) = a.inner.set_user_quota(req).await {
                        return Err(a.status(s));
                    }
                }
                Via::Store(store, _) => {
                    if !store.set_user_quota(&name, quota).await.map_err(failed)? {
                        return Err(CliError::invalid(format!("no user named {name:?}")));
                    }
                }
            }
            match quota {
                Some(q) => eprintln!("user {name}'s quota is now {}", format_quota(Some(&q))),
                None => eprintln!("user {name} has no quota now"),
            }
            Ok(0)
        }
        UsersCmd::List { target, output } => {
            let users: Vec<UserView> = match Via::open(&target).await? {
                Via::Master(mut a) => match a.inner.list_users(pb::ListUsersRequest {}).await {
                    Ok(r) => r.into_inner().users.into_iter().map(Into::into).collect(),
                    Err(s) => return Err(a.status(s)),
                },
                Via::Store(store, _) => {
                    let mut users = store.list_users().await.map_err(failed)?;
                    users.sort_by(|a, b| a.name.cmp(&b.name));
                    users.into_iter().map(Into::into).collect()
                }
            };
            super::print(&users_text(&users, output.output));
            Ok(0)
        }
        UsersCmd::Remove { name, target } => {
            match Via::open(&target).await? {
                Via::Master(mut a) => {
                    let req = pb::RemoveUserRequest { name: name.clone() };
                    if let Err(s) = a.inner.remove_user(req).await {
                        return Err(a.status(s));
                    }
                }
                Via::Store(store, _) => {
                    if !store.remove_user(&name).await.map_err(failed)? {
                        return Err(CliError::invalid(format!("no user named {name:?}")));
                    }
                }
            }
            eprintln!("user {name} removed: its token is refused from now on");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_in_any_order_and_print_back() {
        let q = parse_quota("cpu=16,memory=64G,gpus=2,running=100").unwrap();
        assert_eq!(q.cpu_millis, Some(16_000));
        assert_eq!(q.memory_bytes, Some(64 << 30));
        assert_eq!((q.gpus, q.running), (Some(2), Some(100)));
        let printed = format_quota(Some(&q));
        assert_eq!(printed, "cpu=16,memory=64GiB,gpus=2,running=100");
        assert_eq!(parse_quota(&printed).unwrap(), q);
        let q = parse_quota(" running = 3 , cpu=500m").unwrap();
        assert_eq!(
            (q.cpu_millis, q.running, q.gpus),
            (Some(500), Some(3), None)
        );
        assert_eq!(parse_quota("none").unwrap(), Quota::default());
        assert_eq!(format_quota(Some(&Quota::default())), "-");
        assert_eq!(format_quota(None), "-");
    }

    #[test]
    fn bad_quotas_say_what_is_wrong() {
        let e = |s: &str| parse_quota(s).unwrap_err();
        assert!(
            e("disk=1G").contains("unknown quota limit \"disk\""),
            "{}",
            e("disk=1G")
        );
        assert!(e("cpu").contains("expected KEY=VALUE"));
        assert!(e("running=-1").contains("whole number"));
        assert!(e("memory=lots").contains("invalid memory size"));
        assert!(e("gpus=1,gpus=2").contains("given twice"));
        assert!(e("").contains("expected KEY=VALUE"));
    }
}
