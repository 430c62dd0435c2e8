//! Fuzz target for `wasmig.sum`. For any bytes: parsing must not panic, and a sum file that
//! parses renders to text that parses back to the same entries and total.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmig::project::sumfile::SumFile;

fuzz_target!(|data: &[u8]| {
    let Ok(sum) = SumFile::parse(data) else { return };
    let again = SumFile::parse(sum.render().as_bytes()).expect("a rendered sum file parses");
    assert_eq!(again, sum, "{:?}", String::from_utf8_lossy(data));
});
