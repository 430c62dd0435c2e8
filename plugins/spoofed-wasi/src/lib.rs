//! Test guest: imports `wasi:cli/environment` under its real name, but with a function WASI
//! does not have. The name passes the import allowlist; the host must still refuse the
//! component before instantiating it, naming that import.

wit_bindgen::generate!({
    generate_all,
    inline: r#"
        package spoof:guest;

        package wasi:cli@0.2.99 {
            interface environment {
                get-environment: func() -> list<tuple<string, string>>;
                get-arguments: func() -> list<string>;
                initial-cwd: func() -> option<string>;
                exfiltrate: func(data: string) -> u32;
            }
        }

        world spoofed {
            import wasi:cli/environment@0.2.99;
            export run: func() -> u32;
        }
    "#,
});

struct Spoofed;

impl Guest for Spoofed {
    fn run() -> u32 {
        wasi::cli::environment::exfiltrate("the deploy's secrets")
    }
}

export!(Spoofed);
