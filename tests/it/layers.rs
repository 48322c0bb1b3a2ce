//! The layering of ARCHITECTURE.md section 4, enforced: every `crate::LAYER` path in a module's source
//! (code and doc links alike) must name a layer at or below it. One package keeps the build simple and
//! the public API in one place; this test gives the layers the teeth a split into crates would, and
//! fails with the file and the import that runs upward.

use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and the crate modules it may name. Layers, bottom up: `arch`; then
/// `hex`, `coder`, `quant`, `container`, `tokenizer`, `model`, `io`, `engine` side by side (the coder
/// takes quant's table); `mix` (above quant); `pipeline`; `bench`; `cli`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("arch", &[]),
    ("hex", &[]),
    ("quant", &["arch"]),
    ("coder", &["arch", "quant"]),
    ("container", &["arch", "hex"]),
    ("tokenizer", &["arch", "hex"]),
    ("model", &["arch", "hex"]),
    ("io", &["arch", "hex"]),
    ("engine", &["arch", "hex"]),
    ("mix", &["arch", "quant"]),
    (
        "pipeline",
        &["arch", "hex", "coder", "quant", "container", "tokenizer", "model", "io", "engine", "mix"],
    ),
    (
        "bench",
        &[
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
