//! Credentials over their life, with the real binary: a certificate per worker (`certs
//! issue`, bound to its id) and its revocation (`certs revoke`, read by a running master),
//! join token rotation with and without a grace, the token printed once on stdout and
//! read from a file, and certificates that have expired refused at start with the date.
//! Workers use the fake executor: this is about who may join.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, free_port, run_env, unique_worker_id, Out, Proc};

const QUICK: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> Out {
    run_env(args, &[], QUICK)
}

fn file(d: &Path, f: &str) -> String {
    d.join(f).display().to_string()
}

struct Master {
    proc: Proc,
    url: String,
    store: String,
    secret: String,
}

fn master(dir: &Path, extra: &[&str]) -> Master {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let store = format!("sqlite://{}", dir.join("m.db").display());
    let secret = dir.join("secret").display().to_string();
    let mut args = vec![
        "master",
        "--no-shell",
        "--listen",
        &listen,
        "--store",
        &store,
        "--secret-file",
        &secret,
        "--heartbeat-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn("master", &args, &[]);
    Master {
        proc,
        url: listen,
        store,
        secret,
    }
}

fn worker(url: &str, id: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "worker",
        "--fake-executor",
        "--master",
        url,
        "--id",
        id,
        "--heartbeat-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&format!("worker {id}"), &args, &[])
}

/// Waits until the worker `id` is healthy in the master's view (`extra`: --ca, --token).
fn healthy(url: &str, extra: &[&str], id: &str) {
    eventually(&format!("worker {id} to be healthy"), QUICK, || {
        let mut args = vec!["workers", "--output", "json", "--master", url];
        args.extend_from_slice(extra);
        let out = run(&args);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .any(|w| w["id"] == id && w["health"] == "healthy")
            .then_some(())
    });
}

/// A worker expected to stop: its exit code and error line.
fn refused(mut w: Proc) -> (i32, String) {
    let code = w.wait_exit(QUICK);
    let err = w.stderr();
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{err}"))
        .to_string();
    (code, line)
}

#[test]
fn a_certificate_per_worker_binds_its_id_and_a_revocation_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_s = certs.display().to_string();
    run(&["certs", "init", &certs_s]).ok();
    let issued = run(&["certs", "issue", "gpu-01", "--ca-dir", &certs_s]);
    assert!(issued.ok().contains("--id gpu-01"), "{issued:#?}");
    let again = run(&["certs", "issue", "gpu-01", "--ca-dir", &certs_s]);
    assert_ne!(again.code, 0, "an issued certificate is never overwritten");

    let ca = file(&certs, "ca.pem");
    let crl = file(&certs, "revoked.crl.pem");
    let m = master(
        dir.path(),
        &[
            "--tls-cert",
            &file(&certs, "master.pem"),
            "--tls-key",
            &file(&certs, "master.key"),
            "--client-ca",
            &ca,
            "--client-crl",
            &crl,
        ],
    );
    let url = format!("https://{}", m.url);
    let own = [
        "--ca",
        ca.as_str(),
        "--tls-cert",
        &file(&certs, "gpu-01.pem"),
        "--tls-key",
        &file(&certs, "gpu-01.key"),
    ];
    let w1 = worker(&url, "gpu-01", &own);
    healthy(&url, &["--ca", &ca], "gpu-01");

    // Its certificate does not let another id in.
    let (code, line) = refused(worker(&url, "gpu-02", &own));
    assert_eq!(code, 18, "{line}");
    assert!(line.contains("issued for worker \"gpu-01\""), "{line}");

    // The shared worker.pem of `certs init` may be any worker.
    let shared_id = unique_worker_id("shared");
    let shared = [
        "--ca",
        ca.as_str(),
        "--tls-cert",
        &file(&certs, "worker.pem"),
        "--tls-key",
        &file(&certs, "worker.key"),
    ];
    let _w3 = worker(&url, &shared_id, &shared);
    healthy(&url, &["--ca", &ca], &shared_id);

    // Revoked: the running master reads the list again, and the next connection with
    // that certificate fails its handshake, saying why.
    drop(w1);
    let out = run(&["certs", "revoke", "gpu-01", "--ca-dir", &certs_s]);
    assert!(out.ok().contains("revoked gpu-01"), "{out:#?}");
    let line = eventually("the revocation to be in force", QUICK, || {
        // Before the master has read the list again, the worker joins: stop it, try again.
        let mut w = worker(&url, "gpu-01", &own);
        let t0 = std::time::Instant::now();
        while w.running() && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if w.running() {
            return None;
        }
        let (code, line) = refused(w);
        (code == 10).then_some(line)
    });
    assert!(line.contains("revoked"), "{line}");
    assert!(m.proc.stderr().contains("revocation list read again"));
    // Revoking twice is harmless; the shared certificate still works.
    run(&["certs", "revoke", "gpu-01", "--ca-dir", &certs_s]).ok();
    healthy(&url, &["--ca", &ca], &shared_id);
}

#[test]
fn join_tokens_are_printed_once_on_stdout_rotate_with_a_grace_and_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), &["--require-auth"]);
    let url = format!("http://{}", m.url);
    let first = eventually("the join token on stdout", QUICK, || {
        m.proc
            .stdout()
            .lines()
            .find(|l| l.starts_with("caj_"))
            .map(str::to_string)
    });
    assert!(!m.proc.stderr().contains(&first), "never in the log stream");
    let store = [
        "--store",
        m.store.as_str(),
        "--secret-file",
        m.secret.as_str(),
    ];
    let mut add = vec!["users", "add", "root", "--role", "admin"];
    add.extend(store);
    let admin = run(&add).ok().trim().to_string();
    let auth = ["--token", admin.as_str()];
    let rotate = |grace: &str| {
        let mut args = vec!["token", "rotate", "--grace", grace];
        args.extend(store);
        let out = run(&args);
        let token = out.ok().trim().to_string();
        (token, out.stderr)
    };

    // With a grace, the replaced token still admits a worker; the new one too.
    let (second, said) = rotate("10m");
    assert!(said.contains("still admits workers until"), "{said}");
    for (tag, token) in [("old", &first), ("new", &second)] {
        let id = unique_worker_id(tag);
        let _w = worker(&url, &id, &["--join-token", token]);
        healthy(&url, &auth, &id);
    }

    // Without one, the replaced token is refused at once (17, as the CLI's auth errors).
    let (third, said) = rotate("0");
    assert!(said.contains("admits no worker from now on"), "{said}");
    for token in [&first, &second] {
        let (code, line) = refused(worker(
            &url,
            &unique_worker_id("stale"),
            &["--join-token", token],
        ));
        assert_eq!(code, 17, "{line}");
        assert!(line.contains("invalid join token"), "{line}");
    }

    // From a file (what `ps` cannot show); an empty file is named.
    let token_file = dir.path().join("join-token");
    std::fs::write(&token_file, format!("{third}\n")).unwrap();
    let tf = token_file.display().to_string();
    let id = unique_worker_id("file");
    let _w = worker(&url, &id, &["--join-token-file", &tf]);
    healthy(&url, &auth, &id);
    std::fs::write(&token_file, "\n").unwrap();
    let (code, line) = refused(worker(
        &url,
        &unique_worker_id("empty"),
        &["--join-token-file", &tf],
    ));
    assert_eq!(code, 2, "{line}");
    assert!(line.contains(&tf) && line.contains("empty"), "{line}");
}

/// A CA and a leaf signed by it, valid from `from` to `until` (days from today).
fn dated_certs(dir: &Path, from: i64, until: i64, client: bool) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let date = |days: i64| {
        let t = time_from_now(days);
        rcgen::date_time_ymd(t.0, t.1, t.2)
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.not_before = date(from);
    leaf.not_after = date(until);
    leaf.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let (c, k, a) = (
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
        dir.join("ca.pem"),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca_cert.pem()).unwrap();
    (c, k, a)
}

/// (year, month, day) `days` from today, UTC (civil-from-days, Howard Hinnant's method).
fn time_from_now(days: i64) -> (i32, u8, u8) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = secs.div_euclid(86_400) + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[test]
fn expired_certificates_are_refused_at_start_with_their_date() {
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("server");
    std::fs::create_dir_all(&server).unwrap();
    let (cert, key, _) = dated_certs(&server, -400, -30, false);
    let (y, mo, d) = time_from_now(-30);
    let date = format!("{y:04}-{mo:02}-{d:02}");
    let mut m = master(
        dir.path(),
        &[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    )
    .proc;
    assert_eq!(m.wait_exit(QUICK), 2, "{}", m.stderr());
    let err = m.stderr();
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        line.contains("expired on") && line.contains(&date),
        "{line}"
    );
    assert!(!err.contains("master serving"), "{err}");

    let client = dir.path().join("client");
    std::fs::create_dir_all(&client).unwrap();
    let (cert, key, ca) = dated_certs(&client, -400, -30, true);
    let (code, line) = refused(worker(
        "https://127.0.0.1:1",
        "old-cert",
        &[
            "--ca",
            &ca.display().to_string(),
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    ));
    assert_eq!(code, 2, "{line}");
    assert!(
        line.contains("expired on") && line.contains(&date),
        "{line}"
    );
}
