//! The front door, through the `wasmig` binary: TLS under each `sslmode` against a TLS-only
//! PostgreSQL (scripts/tls-postgres.sh), libpq's variables and password file, `.env`, waiting
//! for a database, and waiting for the migration lock.
//!
//! Every run clears the environment, so nothing of the machine's (a `PGHOST`, a `~/.pgpass`)
//! decides a result.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use wasmig_tests::{Project, TestDb, wasmig_binary};

/// The TLS-only server the test scripts start.
const TLS_PORT: u16 = 5434;

fn certs() -> PathBuf {
    std::env::var_os("WASMIG_TEST_TLS_CERTS").map_or_else(|| PathBuf::from("/var/tmp/wasmig-tls/certs"), PathBuf::from)
}

/// The CA file, after checking that the TLS server answers; fails with what to run if not.
fn ca(name: &str) -> String {
    let answers = TcpStream::connect_timeout(&([127, 0, 0, 1], TLS_PORT).into(), Duration::from_secs(2)).is_ok();
    let path = certs().join(name);
    assert!(
        answers && path.is_file(),
        "these tests need the TLS-only PostgreSQL on 127.0.0.1:{TLS_PORT} and its CA in {}: run scripts/tls-postgres.sh start",
        certs().display()
    );
    path.display().to_string()
}

/// Runs wasmig in a cleared environment with a home folder of its own.
fn run(project: &Project, args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let home = project.path().join("..").join("home");
    std::fs::create_dir_all(&home).expect("a home folder");
    let mut command = Command::new(wasmig_binary());
    command
        .args(args)
        .env_clear()
        .env("WASMIG_PROJECT", project.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", project.path().join("..").join("wasmig-connection-test-cache"))
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command.output().expect("run wasmig")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn tls_url(host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{TLS_PORT}/postgres?{query}")
}

/// verify-full applies a migration; the server itself confirms (in the migration's verify)
/// that the session is encrypted and names itself `wasmig`, and `status` says it is verified.
#[test]
fn verify_full_applies_a_migration_over_tls() {
    let url = tls_url("localhost", &format!("sslmode=verify-full&sslrootcert={}", ca("ca.crt")));
    let table = unique("tls_probe");
    let project = Project::new();
    project.write("wasmig.toml", &format!("[history]\ntable = \"{table}_history\"\n"));
    project.sql(
        "0001_probe",
        &format!("CREATE TABLE {table} (id integer);"),
        Some(&format!("DROP TABLE {table};")),
        Some(
            "SELECT current_setting('application_name') = 'wasmig' \
             AND (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid());",
        ),
    );
    let up = run(&project, &["up", "--database", &url], &[], None);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up.stderr));
    let status = run(&project, &["status", "--database", &url], &[], None);
    let shown = text(&status.stdout);
    assert!(shown.contains("certificate and host name verified"), "{shown}");
    assert!(shown.contains("sslmode=verify-full") && !shown.contains("sslrootcert"), "{shown}");
    let down = run(&project, &["down", "--database", &url], &[], None);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down.stderr));
}

/// A name the certificate does not list, and a CA that did not sign it, fail at once with
/// the reason, even when told to wait.
#[test]
fn verify_full_refuses_a_wrong_host_name_and_an_unknown_ca() {
    let project = Project::new();
    let wrong_name = tls_url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", ca("ca.crt")));
    let output = run(&project, &["status", "--database", &wrong_name, "--wait-for-db", "30s"], &[], None);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(message.contains("not valid for the host name 127.0.0.1 (it names localhost)"), "{message}");
    assert!(!message.contains("waiting for the database"), "a certificate mismatch is not retried: {message}");

    let unknown_ca = tls_url("localhost", &format!("sslmode=verify-full&sslrootcert={}", ca("other-ca.crt")));
    let output = run(&project, &["status", "--database", &unknown_ca], &[], None);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(message.contains("not signed by the CA in") && message.contains("other-ca.crt"), "{message}");
    assert_eq!(message.matches("error:").count(), 1, "one error: {message}");
}

/// verify-ca checks the CA but not the name, so the address works and the other CA does not.
#[test]
fn verify_ca_checks_the_ca_and_not_the_host_name() {
    let project = Project::new();
    let url = tls_url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={}", ca("ca.crt")));
    let output = run(&project, &["status", "--database", &url], &[], None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("checked against the CA"), "{}", text(&output.stdout));
    let url = tls_url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={}", ca("other-ca.crt")));
    let output = run(&project, &["status", "--database", &url], &[], None);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
}

/// `allow` tries without TLS, and encrypts when the hostssl-only server refuses; `prefer`
/// (the default) encrypts; `disable` is refused by it, with the hint to ask for TLS.
#[test]
fn allow_prefer_and_disable_against_a_tls_only_server() {
    ca("ca.crt");
    let project = Project::new();
    for query in ["sslmode=allow", "application_name=by-default"] {
        let output = run(&project, &["status", "--database", &tls_url("127.0.0.1", query)], &[], None);
        assert_eq!(output.status.code(), Some(0), "{query}: {}", text(&output.stderr));
        assert!(text(&output.stdout).contains("encrypted (TLS), the server's certificate not checked"), "{query}");
    }
    let output = run(&project, &["status", "--database", &tls_url("127.0.0.1", "sslmode=disable")], &[], None);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(message.contains("no encryption") && message.contains("use sslmode=require"), "{message}");
}

/// A stand-in server that reads the first message a client sends, answers a TLS request with
/// "no" (`N`) and a startup message by closing, and hands back what it read.
fn plaintext_server() -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    let handle = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return Vec::new() };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut first = [0u8; 8];
        if stream.read_exact(&mut first).is_err() {
            return Vec::new();
        }
        if first == SSL_REQUEST {
            let _ = stream.write_all(b"N");
            // Then whatever follows (a startup message, unless the client gives up).
            let mut next = [0u8; 8];
            let _ = stream.read(&mut next);
        }
        first.to_vec()
    });
    (port, handle)
}

/// The 8 bytes of PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[test]
fn disable_never_sends_a_tls_request_and_prefer_does() {
    let project = Project::new();
    let (port, server) = plaintext_server();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
    let output = run(&project, &["status", "--database", &url], &[], None);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let first = server.join().expect("the stand-in server");
    assert_ne!(first, SSL_REQUEST, "sslmode=disable sent a TLS request");
    assert_eq!(first[4..8], [0, 3, 0, 0], "the first message is the startup message (protocol 3.0): {first:?}");

    let (port, server) = plaintext_server();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=prefer");
    run(&project, &["status", "--database", &url], &[], None);
    assert_eq!(server.join().expect("the stand-in server"), SSL_REQUEST, "sslmode=prefer asks for TLS first");
}

#[test]
fn require_refuses_a_server_without_tls() {
    let project = Project::new();
    let (port, server) = plaintext_server();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require");
    let output = run(&project, &["status", "--database", &url, "--wait-for-db", "30s"], &[], None);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(message.contains("does not accept TLS, and sslmode=require requires it"), "{message}");
    assert!(!message.contains("waiting for the database"), "a refusal of TLS is not retried: {message}");
    assert_eq!(server.join().expect("the stand-in server"), SSL_REQUEST);
}

/// No URL anywhere: the PG* variables name the server, the role and the TLS settings, the
/// database defaults to the role's name, and the password comes from PGPASSFILE.
#[test]
fn pg_variables_and_the_password_file_are_read_like_libpq() {
    let root = ca("ca.crt");
    let project = Project::new();
    let passfile = project.path().join("..").join("pgpass");
    let vars = |file: &Path| {
        vec![
            ("PGHOST", "localhost".to_owned()),
            ("PGPORT", TLS_PORT.to_string()),
            ("PGUSER", "wasmig_password".to_owned()),
            ("PGSSLMODE", "verify-full".to_owned()),
            ("PGSSLROOTCERT", root.clone()),
            ("PGPASSFILE", file.display().to_string()),
        ]
    };
    write_private(&passfile, "# host:port:database:user:password\nlocalhost:5434:*:wasmig_password:s3cret\n");
    let env = vars(&passfile);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = run(&project, &["status"], &env, None);
    let shown = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(shown.contains("postgres://wasmig_password@localhost:5434/wasmig_password?sslmode=verify-full"), "{shown}");

    write_private(&passfile, "localhost:5434:*:wasmig_password:wrong\n");
    let output = run(&project, &["status"], &env, None);
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(message.contains("password authentication failed") && message.contains("~/.pgpass"), "{message}");
    assert!(!message.contains("s3cret") && !message.contains("wrong"), "a password leaked: {message}");
}

fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write the password file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    }
}

/// `.env` in the working folder supplies DATABASE_URL; the environment's beats it.
#[test]
fn dotenv_supplies_database_url_and_the_environment_wins() {
    let project = Project::new();
    project.sql("0001_t", "CREATE TABLE t (id integer);", None, None);
    let workdir = tempfile::tempdir().expect("a working folder");
    std::fs::write(workdir.path().join(".env"), "APP=1\nDATABASE_URL=sqlite:from-dotenv.db # the dev database\n")
        .expect("write .env");
    let output = run(&project, &["up"], &[], Some(workdir.path()));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(workdir.path().join("from-dotenv.db").is_file(), ".env's DATABASE_URL was used");

    let output = run(&project, &["up"], &[("DATABASE_URL", "sqlite:from-env.db")], Some(workdir.path()));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(workdir.path().join("from-env.db").is_file(), "the environment's DATABASE_URL wins");
}

/// Waiting prints a line per attempt with its cause and gives up with a count; not waiting
/// fails once, saying how to wait; an unknown host is never waited for.
#[test]
fn wait_for_db_retries_visibly_and_only_what_can_change() {
    let project = Project::new();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{closed}/postgres");
    let output = run(&project, &["status", "--database", &url, "--wait-for-db", "1s"], &[], None);
    let log = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{log}");
    assert!(log.matches("waiting for the database at").count() >= 2, "{log}");
    assert!(log.contains("(attempt 1, next in 250ms"), "{log}");
    assert!(log.contains("attempts over") && log.contains("refused"), "{log}");
    assert!(!log.contains('\u{1b}'), "no escape codes in a log that is not a terminal: {log:?}");

    let output = run(&project, &["status", "--database", &url], &[], None);
    let log = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{log}");
    assert!(!log.contains("waiting for the database") && log.contains("--wait-for-db"), "{log}");

    let url = "postgres://postgres@no-such-host.invalid/postgres";
    let output = run(&project, &["status", "--database", url, "--wait-for-db", "1m"], &[], None);
    let log = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{log}");
    assert!(log.contains("unknown host no-such-host.invalid") && !log.contains("waiting for the database"), "{log}");

    let output = run(&project, &["status", "--database", url, "--wait-for-db", "soon"], &[], None);
    assert_eq!(output.status.code(), Some(2), "a malformed duration is a usage error");
    assert!(text(&output.stderr).contains("500ms, 30s"), "{}", text(&output.stderr));
}

/// A run behind another's migration lock says who holds it and since when, and gives up at
/// --lock-timeout with exit 5.
#[test]
fn lock_timeout_names_the_holder() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let db = runtime.block_on(TestDb::postgres());
    let project = Project::new();
    project.sql("0001_slow", "SELECT pg_sleep(3); CREATE TABLE slow (id integer);", None, None);
    let mut holder = Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .args(["up", "--database", &db.url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the first run");
    runtime.block_on(async {
        let inspect = db.inspect().await;
        for _ in 0..100 {
            let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
            if inspect.count(held).await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the first run never took the migration lock");
    });
    let output = run(&project, &["up", "--database", &db.url, "--lock-timeout", "1s"], &[], None);
    let log = text(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{log}");
    assert!(log.contains("waiting for the migration lock") && log.contains("held by wasmig/"), "{log}");
    assert!(log.contains("/127.0.0.1 since 20") && log.contains("(gives up after 1s)"), "{log}");
    assert!(log.contains("; giving up (raise --lock-timeout"), "{log}");
    let first = holder.wait().expect("the first run ends");
    assert!(first.success(), "the first run applied its migration");
    let _ = holder.stderr.take().map(|mut e| std::io::copy(&mut e, &mut std::io::sink()));
}
