//! `cloudai master`: opens the store, binds the listener, serves until Ctrl-C / SIGTERM
//! (daemon) or `exit` / Ctrl-D (shell), then shuts down gracefully.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use cloudai_queue::open_store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::args::MasterArgs;
use crate::exit::{CliError, CliResult, Kind};
use crate::shell::{self, printer::SharedPrinter, ShellOptions};

/// The URL the shell uses to reach its own master: loopback when bound to any address.
pub fn loopback_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Resolves on SIGTERM (never, where there is no such signal).
pub async fn sigterm() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Runs the master; returns its exit code.
pub async fn run(mut a: MasterArgs) -> CliResult<i32> {
    let printer = SharedPrinter::default();
    crate::init_tracing("info", printer.clone());
    let mut use_shell = !a.no_shell && (a.shell || std::io::stdin().is_terminal());
    // With TLS the shell checks its own master against --client-ca or CLOUDAI_CA.
    let tls = a.config.security.tls_cert.is_some();
    let shell_ca = a
        .config
        .security
        .client_ca
        .clone()
        .or_else(|| std::env::var_os("CLOUDAI_CA").map(Into::into))
        .filter(|_| tls);
    if use_shell && tls && shell_ca.is_none() {
        tracing::warn!(
            "no shell: with --tls-cert it needs CLOUDAI_CA or --client-ca to verify the master"
        );
        use_shell = false;
    }
    if use_shell {
        // The shell talks to its own master; when auth is required it uses an admin
        // token that exists only in this process.
        let token = cloudai_master::auth::new_api_token();
        crate::credentials::set_process_default(crate::credentials::Credentials {
            token: Some(token.clone()),
            ca: shell_ca,
        });
        a.config.security.shell_token = Some(cloudai_master::auth::config::ShellToken(token));
    }

    a.config
        .check()
        .map_err(|e| CliError::new(Kind::InvalidArgument, e))?;
    let store = open_store(&a.config.store, a.config.store_options())
        .await
        .map_err(|e| CliError::new(Kind::InvalidArgument, format!("cannot open the store: {e}")))?;
    let listener = TcpListener::bind(a.config.listen).await.map_err(|e| {
        CliError::new(
            Kind::Other,
            format!("cannot listen on {}: {e}", a.config.listen),
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(Kind::Other, format!("listener address: {e}")))?;
    tracing::info!(
        listen = %local,
        store = %cloudai_queue::redact_store_uri(&a.config.store),
        "master listening"
    );

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let mut server = tokio::spawn(cloudai_master::serve(
        listener,
        shutdown,
        store,
        a.config.clone(),
    ));

    let shell_done = if use_shell {
        let opts = ShellOptions {
            url: if tls {
                loopback_url(local).replacen("http://", "https://", 1)
            } else {
                loopback_url(local)
            },
            history: a.history_file.clone().or_else(shell::default_history),
            printer,
        };
        Some(shell::spawn(opts, tokio::runtime::Handle::current()))
    } else {
        None
    };
    let user_stop = async {
        match shell_done {
            Some(done) => {
                let _ = done.await;
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let early = tokio::select! {
        _ = user_stop => None,
        _ = sigterm() => None,
        r = &mut server => Some(r),
    };
    let result = match early {
        Some(r) => r,
        None => {
            tracing::info!("shutting down");
            let _ = stop_tx.send(());
            server.await
        }
    };
    match result {
        Ok(Ok(())) => {
            tracing::info!("master stopped");
            Ok(0)
        }
        // Another master holds the SQLite file: say only that, it is the whole story.
        Ok(Err(cloudai_master::MasterError::Store(
            e @ cloudai_queue::QueueError::StoreLocked { .. },
        ))) => Err(CliError::new(Kind::InvalidArgument, e.to_string())),
        Ok(Err(e @ cloudai_master::MasterError::Config(_))) => {
            Err(CliError::new(Kind::InvalidArgument, e.to_string()))
        }
        Ok(Err(e)) => Err(CliError::new(Kind::Other, format!("master failed: {e}"))),
        Err(e) => Err(CliError::new(
            Kind::Other,
            format!("master task failed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_dials_loopback() {
        assert_eq!(
            loopback_url("0.0.0.0:50051".parse().unwrap()),
            "http://127.0.0.1:50051"
        );
        assert_eq!(loopback_url("[::]:7".parse().unwrap()), "http://[::1]:7");
        assert_eq!(
            loopback_url("10.1.2.3:9".parse().unwrap()),
            "http://10.1.2.3:9"
        );
    }
}
