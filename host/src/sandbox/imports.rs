//! The import allowlist, checked before a component is instantiated: the `wasmig:migration`
//! interfaces, and the WASI interfaces that guest toolchains link even when unused (they are
//! served from an empty context: no environment, no preopened directories, no sockets).
//! Anything else (sockets, HTTP, an unknown interface) is refused, naming the import.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The world's `use sql.{connection}` also appears as a root-level import of that resource
/// type; it is the same type as `sql`'s, not a new capability.
const WORLD_TYPE_IMPORTS: &[&str] = &["connection"];

const ALLOWED_INTERFACES: &[&str] = &[
    "wasmig:migration/types",
    "wasmig:migration/sql",
    "wasmig:migration/log",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The first import of `component` outside the allowlist, if any.
pub fn refused_import(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .find(|(name, item)| !is_allowed(name) && !is_world_type(name, &item.ty))
        .map(|(name, _)| name.to_owned())
}

/// When the linker refused `component`, the import it refused, if the error names one: an
/// import whose name is allowed but whose types are not those of the interface of that name
/// (a function WASI does not have, another signature). wasmtime reports which import failed
/// only in its error's text, so the component's own import names are looked for there.
pub fn mismatched_import(engine: &Engine, component: &Component, error: &wasmtime::Error) -> Option<(String, String)> {
    let text = format!("{error:#}");
    let import = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .find(|name| text.contains(&format!("`{name}`")))?;
    let reason = error.chain().last().map_or_else(|| text.clone(), |cause| cause.to_string());
    let detail = text.split_once(": ").map_or(reason.clone(), |(_, rest)| rest.to_owned());
    Some((import, if detail.is_empty() { reason } else { detail }))
}

fn is_world_type(name: &str, item: &ComponentItem) -> bool {
    matches!(item, ComponentItem::Resource(_)) && WORLD_TYPE_IMPORTS.contains(&name)
}

fn is_allowed(import: &str) -> bool {
    // `wasi:cli/stdout@0.2.6` → `wasi:cli/stdout`: any 0.2 patch release of an allowed
    // interface is the same capability.
    let interface = import.split_once('@').map_or(import, |(name, _)| name);
    ALLOWED_INTERFACES.contains(&interface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_wasmig_and_inert_wasi_interfaces_at_any_version() {
        assert!(is_allowed("wasmig:migration/sql@0.1.0"));
        assert!(is_allowed("wasi:cli/stderr@0.2.6"));
    }

    #[test]
    fn refuses_sockets_http_and_unknown_interfaces() {
        assert!(!is_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!is_allowed("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_allowed("evil:exfiltrate/send"));
    }
}
