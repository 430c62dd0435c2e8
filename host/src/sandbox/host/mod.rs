//! Host implementations of the world's imported interfaces, one file per WIT interface.

pub mod log;
pub mod sql;
