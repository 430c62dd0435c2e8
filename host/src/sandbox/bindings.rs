//! The one `bindgen!` for the `wasmig:migration` world. Imports are async (the SQL handle
//! awaits the database) and trappable (a host failure that is not the guest's fault traps the
//! call instead of being handed to the guest as data).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "migration",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasmig:migration/sql.connection": super::host::sql::SqlConnection,
    },
});
