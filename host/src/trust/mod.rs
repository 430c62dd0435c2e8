//! Trust: whether the project on disk is exactly what was hashed into `wasmig.sum` and signed
//! by enough trusted keys ([`verify`]), and the signing side a reviewer uses: `hash`, `sign`,
//! `keygen` ([`signing`]).

pub mod signing;
pub mod verify;

pub use self::verify::{
    DigestState, SignatureState, SumFileState, TrustConfigError, TrustError, TrustPolicy, TrustReport,
    TrustSection, check,
};
