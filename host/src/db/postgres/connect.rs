//! Opening a PostgreSQL session: one attempt under the `sslmode`'s rules, and, when the
//! caller allows it, waiting for a server that is not up yet — with a line per attempt, and
//! no waiting at all for a cause that time will not change.

use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_postgres::config::{Host, SslMode as WireMode};

use super::conninfo::{PgTarget, SslMode, TlsSettings};
use super::tls::{self, Connector, Handshake};
use crate::core::{Human, error_chain};
use crate::db::error::ConnectError;
use crate::db::transport::Transport;

/// How to connect, and what stands between wasmig and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long to keep trying a server that is not answering yet (`--wait-for-db`,
    /// `[database] wait`); zero tries once.
    pub wait: Duration,
    /// The limit of one attempt, unless the connection string sets `connect_timeout`.
    pub attempt_timeout: Duration,
    /// A connection pooler in front of the server (`[database] pooler`).
    pub pooler: Pooler,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { wait: Duration::ZERO, attempt_timeout: Duration::from_secs(10), pooler: Pooler::None }
    }
}

/// What stands between wasmig and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// The server itself, or a pooler that gives each client a server connection for its
    /// whole session (PgBouncer's session mode).
    None,
    /// A pooler that hands out a server connection per transaction (PgBouncer's transaction
    /// mode): nothing may outlive a transaction, not a session setting, not an advisory
    /// lock, not a prepared statement.
    Transaction,
}

/// The first wait between attempts, doubled after each up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An open session and how it travels.
pub(super) struct Opened {
    pub client: Client,
    pub transport: Transport,
}

/// Why one attempt failed: whether trying again could help, and in words.
enum Failure {
    /// The server is not there yet, or is starting, or is full.
    Transient(String),
    /// The answer will be the same next time: unknown host, authentication, no such
    /// database, TLS refused or failed.
    Final { reason: String, code: Option<String> },
}

/// What a target needs to open sessions: its TLS configuration, built (and its files read)
/// once.
#[derive(Clone)]
pub(super) struct Dialer {
    target: PgTarget,
    tls: MakeRustlsConnect,
    options: ConnectOptions,
    shown: String,
}

impl Dialer {
    pub(super) fn new(target: &PgTarget, options: ConnectOptions) -> Result<Dialer, ConnectError> {
        let shown = target.to_string();
        let never_asks = target.tls.mode == SslMode::Disable || target.local_socket_only();
        let settings = if never_asks {
            TlsSettings { mode: SslMode::Disable, client: None, ..target.tls.clone() }
        } else {
            target.tls.clone()
        };
        let tls = tls::client_config(&settings)
            .map_err(|error| ConnectError::Refused { url: shown.clone(), reason: error.to_string() })?;
        Ok(Dialer { target: target.clone(), tls, options, shown })
    }

    /// The connector for a cancel request, which opens a session of its own under the same
    /// `sslmode`.
    pub(super) fn connector(&self) -> Connector {
        Connector::new(&self.tls)
    }

    /// Connects, waiting up to `options.wait` for a server that is not answering yet.
    pub(super) async fn open(&self) -> Result<Opened, ConnectError> {
        let started = Instant::now();
        let wait = self.options.wait;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 1u32;
        loop {
            let reason = match self.attempt().await {
                Ok(opened) => return Ok(opened),
                Err(Failure::Final { reason, .. }) => {
                    return Err(ConnectError::Refused { url: self.shown.clone(), reason });
                }
                // Only a failure pays for a look-up of its own: a name that does not resolve
                // will not resolve by waiting either.
                Err(Failure::Transient(reason)) => match self.unresolvable().await {
                    Some(unknown) => return Err(ConnectError::Refused { url: self.shown.clone(), reason: unknown }),
                    None => reason,
                },
            };
            let waited = started.elapsed();
            if wait.is_zero() {
                return Err(ConnectError::Unreachable { url: self.shown.clone(), reason });
            }
            if waited + backoff > wait {
                return Err(ConnectError::GaveUp { url: self.shown.clone(), attempts, waited, reason });
            }
            tracing::info!(
                "waiting for the database at {}: {reason} (attempt {attempts}, next in {}, waited {} of {})",
                self.shown,
                Human(backoff),
                Human(waited),
                Human(wait)
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempts += 1;
        }
    }

    /// One attempt under the `sslmode`'s rules. `allow` tries without TLS first and with it
    /// when the server refuses an unencrypted session.
    async fn attempt(&self) -> Result<Opened, Failure> {
        let settings = &self.target.tls;
        if self.target.local_socket_only() {
            return self.attempt_with(WireMode::Disable).await;
        }
        match settings.mode {
            SslMode::Disable => self.attempt_with(WireMode::Disable).await,
            SslMode::Allow => match self.attempt_with(WireMode::Disable).await {
                // 28000: no pg_hba.conf entry, which a hostssl-only server answers.
                Err(Failure::Final { code: Some(code), .. }) if code == "28000" => {
                    self.attempt_with(WireMode::Require).await
                }
                other => other,
            },
            SslMode::Prefer => self.attempt_with(WireMode::Prefer).await,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => self.attempt_with(WireMode::Require).await,
        }
    }

    async fn attempt_with(&self, mode: WireMode) -> Result<Opened, Failure> {
        let mut config = self.target.config.clone();
        config.ssl_mode(mode);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.options.attempt_timeout);
        }
        let connector = Connector::new(&self.tls);
        match config.connect(connector.clone()).await {
            Ok((client, connection)) => {
                tokio::spawn(drive(connection));
                let transport = match connector.handshake() {
                    Handshake::Done => Transport::Tls(tls::check_for(&self.target.tls)),
                    _ if self.target.local_socket_only() => Transport::LocalSocket,
                    _ => Transport::Unencrypted,
                };
                Ok(Opened { client, transport })
            }
            Err(error) => Err(self.classify(&error, &connector, mode)),
        }
    }

    fn classify(&self, error: &tokio_postgres::Error, connector: &Connector, mode: WireMode) -> Failure {
        if let Handshake::Failed(tls_error) = connector.handshake() {
            let reason = tls::explain(&tls_error, &self.first_host(), &self.target.tls);
            return Failure::Final { reason, code: None };
        }
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            let reason = format!("{} (code {code})", db.message());
            // 57P03: the server is starting up; 53300: it has no free connection slot.
            return match code {
                "57P03" | "53300" => Failure::Transient(reason),
                _ => Failure::Final { reason: with_hint(reason, code, mode), code: Some(code.to_owned()) },
            };
        }
        let chain = error_chain(error);
        // tokio-postgres' words when the server answers a TLS request with "no".
        if chain.contains("server does not support TLS") {
            let reason = format!(
                "the server does not accept TLS, and sslmode={} requires it; ask for TLS on the server, or \
                 use sslmode=prefer where an unencrypted session is acceptable",
                self.target.tls.mode
            );
            return Failure::Final { reason, code: None };
        }
        Failure::Transient(chain)
    }

    /// Why no host name resolves, when none does (a typo, a missing DNS entry); `None` when
    /// one does, or the target names addresses or sockets.
    async fn unresolvable(&self) -> Option<String> {
        let hosts = self.target.config.get_hosts();
        if !self.target.config.get_hostaddrs().is_empty() {
            return None;
        }
        let mut unknown = None;
        for host in hosts {
            let Host::Tcp(name) = host else { return None };
            if name.parse::<std::net::IpAddr>().is_ok() {
                return None;
            }
            match tokio::net::lookup_host((name.as_str(), 5432)).await {
                Ok(_) => return None,
                Err(error) => unknown = Some(format!("unknown host {name}: {error}")),
            }
        }
        unknown
    }

    fn first_host(&self) -> String {
        match self.target.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        }
    }
}

/// Runs a connection until it closes. The server's notices go to the debug log (`-v`), its
/// warnings to the log: the engine's `CREATE … IF NOT EXISTS` would otherwise fill every run's
/// output with "already exists, skipping".
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notice(notice)) if notice.severity() == "WARNING" => {
                tracing::warn!("the server warns: {}", notice.message());
            }
            Ok(tokio_postgres::AsyncMessage::Notice(notice)) => {
                tracing::debug!("server notice: {}", notice.message());
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "postgresql connection closed");
                return;
            }
        }
    }
}

/// A server's refusal, with what to do about the common ones.
fn with_hint(reason: String, code: &str, mode: WireMode) -> String {
    match code {
        "28000" if mode == WireMode::Disable => {
            format!("{reason}; the server may require TLS: use sslmode=require or verify-full")
        }
        "28P01" => format!("{reason}; check the password (PGPASSWORD, ~/.pgpass or the URL)"),
        "3D000" => format!("{reason}; create the database, or name another in the URL"),
        _ => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_what_to_change() {
        assert!(with_hint("no pg_hba.conf entry".into(), "28000", WireMode::Disable).contains("sslmode=require"));
        assert!(with_hint("bad".into(), "28P01", WireMode::Prefer).contains("PGPASSWORD"));
        assert_eq!(with_hint("other".into(), "42000", WireMode::Prefer), "other");
    }
}
