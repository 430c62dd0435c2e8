//! The layer table holds: every import in `src/` goes to the same layer or one above it in the
//! table written in `src/lib.rs`'s docs, no files import each other in a circle (but the pair
//! `bindgen!` makes), and the binary reaches the library only through its public API.
//!
//! It reads the source as text: each `use` (braces expanded) and each `crate::`, `super::` or
//! `self::` path in code is resolved to the file that defines the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The one circle the component model's bindings make: `bindgen!` names the host's resource
/// type, and the host implements the traits `bindgen!` generates.
const BINDGEN_PAIR: [&str; 2] = ["sandbox/bindings.rs", "sandbox/host/sql.rs"];
/// The binary's own crate root, inside `src/`.
const BINARY_DIR: &str = "cli";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Layer number by top-level module, from the table in `src/lib.rs`'s docs.
fn layer_table() -> BTreeMap<String, usize> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let mut layers = BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("//! |")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.first().map(|c| c.parse::<usize>()) else { continue };
        for module in cells.get(1).copied().unwrap_or_default().split(',') {
            layers.insert(module.trim().trim_matches('`').to_owned(), layer);
        }
    }
    assert!(layers.len() > 10, "src/lib.rs has no layer table: {layers:?}");
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's name relative to `src/`, with `/`.
fn rel(path: &Path) -> String {
    path.strip_prefix(src()).expect("under src").to_string_lossy().replace('\\', "/")
}

/// The crate a file belongs to (its root folder relative to `src/`: "" for the library) and
/// its module path in that crate.
fn module_of(file: &str) -> (&'static str, Vec<String>) {
    let (root, inner) = match file.strip_prefix(&format!("{BINARY_DIR}/")) {
        Some(inner) => (BINARY_DIR, inner),
        None => ("", file),
    };
    let mut parts: Vec<String> = inner.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    (root, parts)
}

/// The file defining the longest prefix of `path` that is a module of the crate at `root`.
fn file_of(root: &str, path: &[String]) -> Option<String> {
    let base = if root.is_empty() { src() } else { src().join(root) };
    for len in (0..=path.len()).rev() {
        let dir = path[..len].iter().fold(base.clone(), |p, part| p.join(part));
        let candidates = if len == 0 {
            vec![base.join(if root.is_empty() { "lib.rs" } else { "main.rs" })]
        } else {
            vec![dir.with_extension("rs"), dir.join("mod.rs")]
        };
        if let Some(found) = candidates.into_iter().find(|c| c.is_file()) {
            return Some(rel(&found));
        }
    }
    None
}

/// The text with comments, strings and character literals blanked (lengths kept), so that
/// neither a doc comment nor a message is read as an import.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(bytes.len(), |n| i + n + 4);
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'"' || (bytes[i] == b'r' && bytes.get(i + 1).is_some_and(|&b| b == b'"' || b == b'#')) {
            let end = string_end(bytes, i);
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'\'' && bytes.get(i + 2) == Some(&b'\'') {
            blank(&mut out, i, i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

fn string_end(bytes: &[u8], start: usize) -> usize {
    if bytes[start] == b'r' {
        let hashes = bytes[start + 1..].iter().take_while(|&&b| b == b'#').count();
        let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
        let open = start + 1 + hashes + 1;
        return bytes[open..]
            .windows(close.len())
            .position(|w| w == close)
            .map_or(bytes.len(), |n| open + n + close.len());
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Inline modules (`mod tests { … }`) as (name, start, end) byte ranges.
fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("mod ") {
        let start = search + at;
        search = start + 4;
        if start > 0 && code.as_bytes()[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let rest = &code[start + 4..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = start + 4 + rest.len() - after.len();
        let mut depth = 0;
        let mut end = code.len();
        for (offset, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((name, open, end));
    }
    found
}

/// `use a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    let Some(open) = tree.find('{') else { return vec![tree] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// The modules a file declares in files of their own (`mod name;`), which its code may name
/// without `self::`.
fn child_modules(code: &str) -> Vec<String> {
    code.split(';')
        .filter_map(|statement| {
            let words: Vec<&str> = statement.split_whitespace().collect();
            match words.as_slice() {
                [.., "mod", name] if name.chars().all(|c| c.is_alphanumeric() || c == '_') => Some((*name).to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// Every path a file's code names that starts at `crate`, `super`, `self`, one of its child
/// modules or (in the binary) the library's name, with the byte offset it stands at.
fn named_paths(code: &str) -> Vec<(String, usize)> {
    let mut paths = Vec::new();
    let mut uses = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("use ") {
        let start = search + at;
        search = start + 4;
        if start > 0 && (code.as_bytes()[start - 1].is_ascii_alphanumeric() || code.as_bytes()[start - 1] == b'_') {
            continue;
        }
        let Some(end) = code[start..].find(';') else { break };
        let tree = &code[start + 4..start + end];
        paths.extend(expand(tree).into_iter().map(|p| (p, start)));
        uses.push(start..start + end);
    }
    let children: Vec<String> = child_modules(code).into_iter().map(|child| format!("{child}::")).collect();
    let roots = ["crate::", "super::", "self::", "wasmig::"].into_iter().map(str::to_owned).chain(children);
    for root in roots {
        let root = root.as_str();
        let mut search = 0;
        while let Some(at) = code[search..].find(root) {
            let start = search + at;
            search = start + root.len();
            let before = start.checked_sub(1).map(|i| code.as_bytes()[i]);
            let in_use = uses.iter().any(|range| range.contains(&start));
            if in_use || before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            let path: String =
                code[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            paths.push((path, start));
        }
    }
    paths
}

struct Import {
    from: String,
    to: String,
    path: String,
}

/// Every import between two files of `src/`, and every path the binary takes from the
/// library.
fn imports() -> (Vec<Import>, Vec<(String, String)>) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut imports = Vec::new();
    let mut binary_uses = Vec::new();
    for file in files {
        let name = rel(&file);
        let code = code_only(&fs::read_to_string(&file).expect("read"));
        let (root, module) = module_of(&name);
        let inline = inline_modules(&code);
        let children = child_modules(&code);
        for (path, at) in named_paths(&code) {
            let segments: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let Some(first) = segments.first() else { continue };
            if first == "wasmig" {
                binary_uses.push((name.clone(), path.clone()));
                continue;
            }
            let mut current = module.clone();
            current.extend(inline.iter().filter(|(_, s, e)| (*s..*e).contains(&at)).map(|(n, _, _)| n.clone()));
            let mut rest = segments.as_slice();
            let mut target = match first.as_str() {
                "crate" => {
                    rest = &rest[1..];
                    Vec::new()
                }
                "self" => {
                    rest = &rest[1..];
                    current.clone()
                }
                "super" => {
                    while rest.first().is_some_and(|s| s == "super") {
                        current.pop();
                        rest = &rest[1..];
                    }
                    current.clone()
                }
                child if children.iter().any(|c| c == child) => module.clone(),
                _ => continue,
            };
            target.extend(rest.iter().cloned());
            if let Some(to) = file_of(root, &target)
                && to != name
            {
                imports.push(Import { from: name.clone(), to, path: path.clone() });
            }
        }
    }
    (imports, binary_uses)
}

/// The layer a file of `src/` is in: its top-level module's.
fn layer_of(file: &str, table: &BTreeMap<String, usize>) -> Result<usize, String> {
    if file.starts_with(&format!("{BINARY_DIR}/")) {
        return table.get(BINARY_DIR).copied().ok_or_else(|| format!("the layer table has no {BINARY_DIR}"));
    }
    if file == "lib.rs" {
        return Ok(usize::MAX);
    }
    let top = file.split('/').next().unwrap_or(file).trim_end_matches(".rs");
    table.get(top).copied().ok_or_else(|| format!("{file}: module {top} is in no layer of the table in src/lib.rs"))
}

#[test]
fn every_import_goes_to_the_same_layer_or_one_before_it() {
    let table = layer_table();
    let (imports, _) = imports();
    let mut broken = BTreeSet::new();
    for import in &imports {
        let (from, to) = match (layer_of(&import.from, &table), layer_of(&import.to, &table)) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(problem), _) | (_, Err(problem)) => {
                broken.insert(problem);
                continue;
            }
        };
        if to > from {
            broken.insert(format!(
                "{} imports {} from {} (layer {to}), a later layer than its own ({from})",
                import.from, import.path, import.to
            ));
        }
    }
    assert!(broken.is_empty(), "the layer table in src/lib.rs is broken:\n{}", Vec::from_iter(broken).join("\n"));
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let (imports, _) = imports();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &imports {
        edges.entry(&import.from).or_default().insert(&import.to);
    }
    let circles: Vec<Vec<&str>> = strongly_connected(&edges)
        .into_iter()
        .filter(|circle| circle.len() > 1 && circle.as_slice() != BINDGEN_PAIR)
        .collect();
    let described: Vec<String> = circles
        .iter()
        .map(|circle| {
            let ties: Vec<String> = imports
                .iter()
                .filter(|i| circle.contains(&i.from.as_str()) && circle.contains(&i.to.as_str()))
                .map(|i| format!("  {} -> {} ({})", i.from, i.to, i.path))
                .collect();
            format!("{}:\n{}", circle.join(", "), ties.join("\n"))
        })
        .collect();
    assert!(described.is_empty(), "import circles:\n{}", described.join("\n"));
}

#[test]
fn the_binary_uses_only_the_public_api() {
    let table = layer_table();
    let (_, uses) = imports();
    let reaching_in: Vec<String> = uses
        .iter()
        .filter(|(_, path)| path.split("::").nth(1).is_some_and(|module| table.contains_key(module)))
        .map(|(file, path)| format!("{file}: {path}"))
        .collect();
    assert!(reaching_in.is_empty(), "the binary reaches into the library's layers:\n{}", reaching_in.join("\n"));
}

#[test]
fn the_reader_sees_imports_it_must_judge() {
    // The reader itself: a later-layer import, a circle and a nested module's `super` are
    // each found in a sample the size of one file.
    let sample = "mod child;\nuse crate::run::session::Session;\nuse super::{a, b::{c, d}};\n\
                  mod tests { use super::*; }\nfn f() { child::g() }\n\
                  // use crate::migrator::Migrator;\nconst S: &str = \"crate::error::Error\";";
    let code = code_only(sample);
    let paths: Vec<String> = named_paths(&code).into_iter().map(|(p, _)| p).collect();
    assert!(paths.contains(&"crate::run::session::Session".to_owned()), "{paths:?}");
    assert!(paths.contains(&"super::b::d".to_owned()), "{paths:?}");
    assert!(paths.contains(&"child::g".to_owned()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("migrator") || p.contains("error")), "{paths:?}");
    assert_eq!(inline_modules(&code).len(), 1);
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    edges.entry("a").or_default().insert("b");
    edges.entry("b").or_default().insert("a");
    assert_eq!(strongly_connected(&edges), vec![vec!["a", "b"]]);
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected<'a>(edges: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct Walk<'a, 'e> {
        edges: &'e BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Walk<'a, '_> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for &next in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                component.sort_unstable();
                self.components.push(component);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in edges.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.components
}
