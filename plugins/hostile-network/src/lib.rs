//! Test guest: tries to reach the network. Linking `std::net` makes the component import
//! `wasi:sockets`, which the host must refuse before instantiation, naming the import.

use wasmig_sdk::{Db, Error, Migration, Result};

struct OpenSocket;

impl Migration for OpenSocket {
    fn up(_db: &Db) -> Result<()> {
        let stream =
            std::net::TcpStream::connect("127.0.0.1:5432").map_err(|e| Error::msg(format!("connect failed: {e}")))?;
        drop(stream);
        Ok(())
    }
}

wasmig_sdk::export_migration!(OpenSocket);
