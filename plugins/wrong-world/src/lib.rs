//! Test guest: a valid component that does not implement the `wasmig:migration` world
//! (it exports no `up`). The host must refuse it, naming the file.

#[unsafe(no_mangle)]
pub extern "C" fn unrelated_export() -> i32 {
    42
}
