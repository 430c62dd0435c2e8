//! [`Transport`]: how a session reaches its database, and what its TLS checked, for `status`
//! and `history` to say whether the session is encrypted.

use std::fmt;

/// What an encrypted session checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsCheck {
    /// Nothing: encrypted against eavesdropping, not against an impostor (`prefer`,
    /// `require`, `allow`).
    None,
    /// That a trusted CA signed it (`verify-ca`, or `require` with a root certificate file).
    Ca,
    /// That a trusted CA signed it for the host connected to (`verify-full`).
    CaAndHost,
}

/// How the session reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A file or memory in this process (SQLite): nothing crosses a network.
    InProcess,
    /// A Unix socket on this machine, where TLS does not apply.
    LocalSocket,
    /// TCP without encryption.
    Unencrypted,
    /// TCP with TLS.
    Tls(TlsCheck),
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Transport::InProcess => "in-process (no network)",
            Transport::LocalSocket => "local socket (not encrypted; TLS does not apply)",
            Transport::Unencrypted => "NOT encrypted (set sslmode=verify-full to require TLS)",
            Transport::Tls(TlsCheck::None) => "encrypted (TLS), the server's certificate not checked",
            Transport::Tls(TlsCheck::Ca) => "encrypted (TLS), the server's certificate checked against the CA",
            Transport::Tls(TlsCheck::CaAndHost) => "encrypted (TLS), the server's certificate and host name verified",
        })
    }
}
