//! TLS to PostgreSQL over rustls (with the `ring` provider, through tokio-postgres-rustls):
//! the client configuration each `sslmode` calls for, and a [`Connector`] that records how the
//! handshake went, so a session can say whether it is encrypted and a failed handshake can
//! say why in words.
//!
//! rustls was chosen over native-tls: it is memory-safe, needs no system OpenSSL to build or
//! run (a static binary works in a distroless CI image), and verifies certificates the same
//! way on every platform. `ring` builds with a C compiler alone, where aws-lc-rs wants CMake.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{RootCerts, SslMode, TlsSettings};
use crate::db::transport::TlsCheck;

/// What `settings` has a session check of the server's certificate.
pub(super) fn check_for(settings: &TlsSettings) -> TlsCheck {
    match settings.mode {
        SslMode::VerifyFull => TlsCheck::CaAndHost,
        SslMode::VerifyCa => TlsCheck::Ca,
        SslMode::Require if settings.roots_from_file => TlsCheck::Ca,
        _ => TlsCheck::None,
    }
}

/// Why the TLS settings could not be put to use; each names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the {what} {path} ({setting}): {reason}")]
    File { what: &'static str, path: String, setting: &'static str, reason: String },
    #[error(
        "no CA certificates were found in the system's store to check the server against; set \
         sslrootcert (or PGSSLROOTCERT) to the CA's PEM file"
    )]
    NoSystemRoots,
    #[error("the TLS client cannot be set up: {0}")]
    Rustls(String),
}

/// How a connection's TLS handshake went, as far as it got.
#[derive(Debug, Clone, Default)]
pub(super) enum Handshake {
    /// The server declined TLS, or it was never asked.
    #[default]
    NotStarted,
    Done,
    Failed(rustls::Error),
}

/// A [`MakeTlsConnect`] that hands the handshake to tokio-postgres-rustls and records its
/// outcome.
#[derive(Clone)]
pub(super) struct Connector {
    inner: MakeRustlsConnect,
    handshake: Arc<Mutex<Handshake>>,
}

impl Connector {
    /// A connector sharing `make`'s configuration, with a record of its own.
    pub(super) fn new(make: &MakeRustlsConnect) -> Connector {
        Connector { inner: make.clone(), handshake: Arc::new(Mutex::new(Handshake::NotStarted)) }
    }

    pub(super) fn handshake(&self) -> Handshake {
        self.handshake.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = Recorded<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        let inner = <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut self.inner, domain)?;
        Ok(Recorded { inner, handshake: self.handshake.clone() })
    }
}

/// One handshake, recorded when it ends.
pub(super) struct Recorded<T> {
    inner: T,
    handshake: Arc<Mutex<Handshake>>,
}

type HandshakeFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, T> TlsConnect<S> for Recorded<T>
where
    T: TlsConnect<S, Error = io::Error>,
    T::Future: Send + 'static,
    T::Stream: 'static,
{
    type Stream = T::Stream;
    type Error = io::Error;
    type Future = HandshakeFuture<T::Stream, io::Error>;

    fn connect(self, stream: S) -> Self::Future {
        let handshake = self.handshake;
        let connecting = self.inner.connect(stream);
        Box::pin(async move {
            let result = connecting.await;
            let outcome = match &result {
                Ok(_) => Handshake::Done,
                Err(error) => match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    Some(tls) => Handshake::Failed(tls.clone()),
                    None => Handshake::Failed(rustls::Error::General(error.to_string())),
                },
            };
            if let Ok(mut slot) = handshake.lock() {
                *slot = outcome;
            }
            result
        })
    }
}

/// The TLS connector for `settings`, its files read once; clones share its configuration.
pub(super) fn client_config(settings: &TlsSettings) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check_for(settings) {
        TlsCheck::None => Arc::new(Unchecked { provider: provider.clone() }),
        check => {
            let roots = Arc::new(root_store(&settings.roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
            if check == TlsCheck::CaAndHost { webpki } else { Arc::new(CaOnly { inner: webpki }) }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &settings.client {
        Some((cert, key)) if cert.is_file() => {
            let chain = read_certs(cert, "client certificate", "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, "client key", "sslkey", e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            let (added, _) = store.add_parsable_certificates(read_certs(path, "root certificate", "sslrootcert")?);
            if added == 0 {
                return Err(file_error(path, "root certificate", "sslrootcert", "it holds no usable certificate"));
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsSetupError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

fn read_certs(
    path: &Path,
    what: &'static str,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, what, setting, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, what, setting, e))?;
    if certs.is_empty() {
        return Err(file_error(path, what, setting, "it holds no PEM certificate"));
    }
    Ok(certs)
}

fn file_error(path: &Path, what: &'static str, setting: &'static str, reason: impl fmt::Display) -> TlsSetupError {
    TlsSetupError::File { what, path: path.display().to_string(), setting, reason: reason.to_string() }
}

/// What a failed handshake means, in words that say what to change.
pub(super) fn explain(error: &rustls::Error, host: &str, settings: &TlsSettings) -> String {
    let roots = match &settings.roots {
        RootCerts::File(path) => format!("the CA in {}", path.display()),
        RootCerts::System => "the system's CA store".to_owned(),
    };
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            let presented = match error {
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
                    format!(" (it names {})", presented.iter().map(|name| bare_name(name)).collect::<Vec<_>>().join(", "))
                }
                _ => String::new(),
            };
            format!(
                "the server's certificate is not valid for the host name {host}{presented}; sslmode=verify-full \
                 checks it: connect by a name the certificate lists"
            )
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by {roots} (sslmode={}); set sslrootcert to the CA that \
             issued it",
            settings.mode
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_owned()
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// A presented name as rustls words it (`DnsName("db.example")`), without the wrapping.
fn bare_name(presented: &str) -> &str {
    match (presented.find('"'), presented.rfind('"')) {
        (Some(start), Some(end)) if end > start => &presented[start + 1..end],
        _ => presented,
    }
}

/// Accepts any certificate (the modes that encrypt without authenticating), while still
/// checking that the handshake was signed by the key the certificate holds.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to a trusted CA; the name is not compared.
/// webpki checks the chain before the name, so a name mismatch means the chain passed.
#[derive(Debug)]
struct CaOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(mode: SslMode, roots_from_file: bool) -> TlsSettings {
        let roots = if roots_from_file { RootCerts::File(PathBuf::from("/ca.pem")) } else { RootCerts::System };
        TlsSettings { mode, roots, roots_from_file, client: None }
    }

    #[test]
    fn each_mode_checks_what_libpq_checks() {
        assert_eq!(check_for(&settings(SslMode::Prefer, true)), TlsCheck::None);
        assert_eq!(check_for(&settings(SslMode::Allow, true)), TlsCheck::None);
        assert_eq!(check_for(&settings(SslMode::Require, false)), TlsCheck::None);
        assert_eq!(check_for(&settings(SslMode::Require, true)), TlsCheck::Ca);
        assert_eq!(check_for(&settings(SslMode::VerifyCa, false)), TlsCheck::Ca);
        assert_eq!(check_for(&settings(SslMode::VerifyFull, true)), TlsCheck::CaAndHost);
    }

    #[test]
    fn presented_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn a_missing_root_file_names_the_setting() {
        let mut settings = settings(SslMode::VerifyFull, true);
        settings.roots = RootCerts::File(PathBuf::from("/nonexistent/ca.pem"));
        let Err(error) = client_config(&settings) else { panic!("a missing root file must be refused") };
        assert!(error.to_string().contains("/nonexistent/ca.pem (sslrootcert)"), "{error}");
    }
}
