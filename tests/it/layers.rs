//! The layering of ARCHITECTURE.md section 4, enforced: every `crate::LAYER` path in a module's source
//! (code and doc links alike) must name a layer at or below it. One package keeps the build simple and
//! the public API in one place; this test gives the layers the teeth a split into crates would, and
//! fails with the file and the import that runs upward.

use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and the crate modules it may name. Layers, bottom up: `testing` (the
/// test-data generator, which imports nothing and which every layer's tests may use); `arch`; then
/// `hex`, `coder`, `quant`, `container`, `tokenizer`, `model`, `io`, `engine` side by side (the coder
/// takes quant's table); `mix` (above quant); `pipeline`; `bench`; `cli`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("testing", &[]),
    ("arch", &["testing"]),
    ("hex", &[]),
    ("quant", &["testing", "arch"]),
    ("coder", &["testing", "arch", "quant"]),
    ("container", &["testing", "arch", "hex"]),
    ("tokenizer", &["testing", "arch", "hex"]),
    ("model", &["testing", "arch", "hex"]),
    ("io", &["testing", "arch", "hex"]),
    ("engine", &["testing", "arch", "hex"]),
    ("mix", &["testing", "arch", "quant"]),
    (
        "pipeline",
        &[
            "testing",
            "arch",
            "hex",
            "coder",
            "quant",
            "container",
            "tokenizer",
            "model",
            "io",
            "engine",
            "mix",
        ],
    ),
    (
        "bench",
        &[
            "testing",
            "arch",
            "hex",
            "coder",
            "quant",
            "container",
            "tokenizer",
            "model",
            "io",
            "engine",
            "mix",
            "pipeline",
        ],
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules `text` names as `crate::NAME`.
fn named_layers(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .map(|(at, m)| {
            let rest = &text[at + m.len()..];
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .collect()
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for &(layer, allowed) in ALLOWED {
        let mut files = Vec::new();
        let dir = src.join(layer);
        if dir.is_dir() {
            sources(&dir, &mut files);
        } else {
            files.push(src.join(format!("{layer}.rs")));
        }
        assert!(files.iter().all(|f| f.exists()), "layer {layer} has no source under src/");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for named in named_layers(&text) {
                if named != layer && !allowed.contains(&named.as_str()) {
                    violations.push(format!("{} names crate::{named}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "imports that run against the layers:\n{}", violations.join("\n"));
}

#[test]
fn the_scan_sees_an_upward_import() {
    assert_eq!(named_layers("use crate::cli::plan; // [`crate::io`]"), ["cli", "io"]);
}

/// A module of `src/` as the compiler sees it: `a/b.rs` and `a/b/mod.rs` are both `a::b`; `lib.rs`
/// and `main.rs` are the crate root (the empty path).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if path.last().is_some_and(|s| s == "mod") || path == ["lib"] || path == ["main"] {
        path.pop();
    }
    path
}

/// `text` without its `//` comments (doc comments included), line by line.
fn code_only(text: &str) -> String {
    text.lines().map(|line| line.find("//").map_or(line, |at| &line[..at])).collect::<Vec<_>>().join("\n")
}

/// Every `super::...` and `crate::...` path in the code of `text` (not its comments), with `use` groups
/// expanded (`super::{a::X, b}` gives `super::a::X` and `super::b`), each as its segments with the
/// leading `super`s resolved against `module`. A `super` inside an inline `mod NAME { ... }` (a test
/// module) first leaves that inline module, so `use super::*` there names the file's own module.
/// Paths that stay inside the file's module are dropped.
fn absolute_paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    fn ident(text: &[u8], at: usize) -> usize {
        let mut end = at;
        while end < text.len() && (text[end].is_ascii_alphanumeric() || text[end] == b'_') {
            end += 1;
        }
        end
    }
    /// The paths of `prefix` followed by what starts at `at`: segments joined by `::`, ending in an
    /// identifier, `*` or a `{...}` group of such paths.
    fn expand(text: &[u8], mut at: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        loop {
            if text.get(at) == Some(&b'{') {
                at += 1;
                loop {
                    while at < text.len() && (text[at].is_ascii_whitespace() || text[at] == b',') {
                        at += 1;
                    }
                    if at >= text.len() || text[at] == b'}' {
                        return at + 1;
                    }
                    let before = at;
                    at = expand(text, at, prefix.clone(), out);
                    // ` as NAME` and anything else up to the next item or the group's end.
                    while at < text.len() && !matches!(text[at], b',' | b'}') {
                        at += 1;
                    }
                    if at == before {
                        at += 1;
                    }
                }
            }
            let end = ident(text, at);
            if end == at {
                out.push(prefix);
                return at;
            }
            prefix.push(String::from_utf8_lossy(&text[at..end]).into_owned());
            at = end;
            if text[at..].starts_with(b"::") {
                at += 2;
            } else {
                out.push(prefix);
                return at;
            }
        }
    }
    let text = code_only(text);
    let bytes = text.as_bytes();
    let (mut depth, mut inline_mods) = (0usize, Vec::<usize>::new());
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let word_start = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let rest = &bytes[at..];
        if rest[0] == b'{' {
            depth += 1;
        } else if rest[0] == b'}' {
            depth = depth.saturating_sub(1);
            if inline_mods.last() == Some(&depth) {
                inline_mods.pop();
            }
        } else if word_start && rest.starts_with(b"mod ") {
            let name_end = ident(bytes, at + 4);
            let brace = bytes[name_end..].iter().position(|b| !b.is_ascii_whitespace()).map(|i| name_end + i);
            if name_end > at + 4 && brace.is_some_and(|b| bytes[b] == b'{') {
                inline_mods.push(depth);
            }
        } else if word_start && (rest.starts_with(b"super::") || rest.starts_with(b"crate::")) {
            let mut paths = Vec::new();
            let end = expand(bytes, at, Vec::new(), &mut paths);
            for path in paths {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let resolved = if path[0] == "crate" {
                    path[1..].to_vec()
                } else if supers > inline_mods.len() && supers - inline_mods.len() <= module.len() {
                    let up = supers - inline_mods.len();
                    let mut p = module[..module.len() - up].to_vec();
                    p.extend_from_slice(&path[supers..]);
                    p
                } else {
                    continue;
                };
                out.push(resolved);
            }
            at = end.max(at + 1);
            continue;
        }
        at += 1;
    }
    out
}

/// Pairs of sibling modules (the same parent module) that each name the other: `a::b` naming
/// `a::c` (by `super::c::...` or `crate::a::c::...`) while `a::c` names `a::b`. A sibling is a file
/// `a/c.rs` or a folder `a/c/mod.rs` alike. A parent (`mod.rs`, `lib.rs`) and its children are exempt:
/// a parent declares its children and re-exports their items, and children use what the parent
/// defines, which is how Rust modules work. Items a parent re-exports are not followed back to the
/// child that defines them: the scan sees the paths as written. Comments and doc links do not count:
/// a lower file may point its reader at the file that uses it.
fn sibling_cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: Vec<(Vec<String>, PathBuf)> =
        files.iter().map(|f| (module_path(src, f), f.clone())).collect();
    let mut names = std::collections::BTreeSet::new();
    for (module, file) in &modules {
        if module.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for path in absolute_paths(module, &text) {
            // The longest prefix of the path that is a module of the crate.
            let Some(named) =
                (1..=path.len()).rev().map(|k| &path[..k]).find(|p| modules.iter().any(|(m, _)| m == p))
            else {
                continue;
            };
            let sibling =
                named.len() == module.len() && named[..named.len() - 1] == module[..module.len() - 1];
            if sibling && named != module.as_slice() {
                names.insert((module.join("::"), named.join("::")));
            }
        }
    }
    let mut cycles: Vec<String> = names
        .iter()
        .filter(|(a, b)| a < b && names.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{a} <-> {b}"))
        .collect();
    cycles.sort();
    cycles
}

/// "No two files import each other" (ARCHITECTURE.md section 4): between two sibling modules the
/// imports run one way, so one of them is the lower file and could be read first.
#[test]
fn no_two_sibling_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let cycles = sibling_cycles(&src);
    assert!(cycles.is_empty(), "sibling modules that import each other:\n{}", cycles.join("\n"));
}

#[test]
fn the_scan_resolves_sibling_paths() {
    let module = ["pipeline".to_string(), "predict".to_string()];
    let text = "use super::{PipelineError, session::Session, prefill::{prefill, slice_rows}};\n\
                use crate::container::header::MAGIC; // [`x`](super::window::Sliding)\n\
                /// [`y`](crate::cli::plan)\n\
                fn f() -> super::window::Window { todo!() }\n\
                #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::draft::Drafter;\n}\n";
    let paths: Vec<String> = absolute_paths(&module, text).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "pipeline::PipelineError",
            "pipeline::session::Session",
            "pipeline::prefill::prefill",
            "pipeline::prefill::slice_rows",
            "container::header::MAGIC",
            "pipeline::window::Window",
            "pipeline::draft::Drafter",
        ]
    );
}

/// The pipeline never draws on the terminal: it reports through `io::Progress` and passes the model
/// layer's `ModelProgress` through, and the CLI chooses what draws them. So no file of it names the
/// drawing crate.
#[test]
fn the_pipeline_names_no_terminal_drawing_type() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pipeline"), &mut files);
    let drawing: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("indicatif"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(drawing.is_empty(), "pipeline files that name indicatif: {drawing:?}");
}
