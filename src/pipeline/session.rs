//! Everything a run needs before the first byte is coded: the model file, its tokenizer, the engine, and
//! the checks that make a decoder refuse an archive it cannot reproduce exactly.

use sha2::{Digest, Sha256};

use super::error::hex;
use super::{CodecOptions, PipelineError};
use crate::container::Header;
use crate::engine::{ENGINE_VERSION, EngineError, EngineOptions, KernelPath, Model};
use crate::model::{GgufFile, ModelSpec, Registry, ResolvedModel};
use crate::quant::{FreqTable, PRECISION_BITS};
use crate::tokenizer::Tokenizer;

/// The text whose quantized predictions form the canary. Changing it changes every archive's header, so it
/// is part of the format (FORMAT.md).
pub const CANARY_TEXT: &str =
    "The canary of llmzip: 0123456789, the quick brown fox jumps over the lazy dog.\n";

/// A loaded model ready to code: resolved file, tokenizer and engine.
pub struct Session {
    pub model: ResolvedModel,
    pub tokenizer: Tokenizer,
    pub engine: Model,
    /// Workers for the pipeline's own parallel work (building many frequency tables at once), as many as
    /// the engine has. Each table is a pure function of its row, so this changes speed, never bytes.
    pub(super) pool: rayon::ThreadPool,
}

impl Session {
    /// Loads the model `spec` names (`None`: the registry default) for compression.
    pub fn open(spec: Option<&str>, opts: &CodecOptions) -> Result<Self, PipelineError> {
        let spec = match spec {
            Some(s) => ModelSpec::parse(s),
            None => ModelSpec::Id(crate::model::default_id()?.to_string()),
        };
        let model = crate::model::resolve(&spec, &crate::model::progress_bar())?;
        Self::load(model, opts)
    }

    /// Loads the model an archive names (or the file `--model` points at, which must be the same model) and
    /// checks that this build reproduces the archive's arithmetic before anything is decoded.
    pub fn open_for(header: &Header, opts: &CodecOptions) -> Result<Self, PipelineError> {
        Self::check_versions(header)?;
        let spec = match opts.model.as_deref() {
            Some(s) => ModelSpec::parse(s),
            None => {
                if Registry::embedded()?.get(&header.model_id).is_err() {
                    return Err(PipelineError::LocalModelNeeded {
                        id: header.model_id.clone(),
                        sha256: hex(&header.model_sha256),
                    });
                }
                ModelSpec::Id(header.model_id.clone())
            }
        };
        let model = crate::model::resolve(&spec, &crate::model::progress_bar())?;
        crate::model::check_matches(&model, &header.model_id, &header.model_sha256)?;
        let session = Self::load(model, opts)?;
        session.check_header(header)?;
        Ok(session)
    }

    /// Checks what a loaded session must share with an archive: tokenizer and canary (the model file
    /// itself was checked by its sha256 when it was resolved).
    pub fn check_header(&self, header: &Header) -> Result<(), PipelineError> {
        Self::check_versions(header)?;
        let ours = self.tokenizer.fingerprint();
        if ours != header.tokenizer_fingerprint {
            return Err(PipelineError::TokenizerMismatch {
                archive: hex(&header.tokenizer_fingerprint),
                ours: hex(&ours),
            });
        }
        let canary = self.canary()?;
        if canary != header.canary {
            return Err(PipelineError::Canary { archive: hex(&header.canary), ours: hex(&canary) });
        }
        Ok(())
    }

    fn check_versions(header: &Header) -> Result<(), PipelineError> {
        if header.engine_version != ENGINE_VERSION {
            return Err(PipelineError::EngineVersion {
                archive: header.engine_version,
                ours: ENGINE_VERSION,
            });
        }
        if u32::from(header.precision_bits) != PRECISION_BITS {
            return Err(PipelineError::Precision {
                archive: header.precision_bits,
                ours: PRECISION_BITS as u8,
            });
        }
        Ok(())
    }

    fn load(model: ResolvedModel, opts: &CodecOptions) -> Result<Self, PipelineError> {
        let gguf = GgufFile::open(&model.path)?;
        let tokenizer = Tokenizer::from_gguf(gguf.content())?;
        let kernel = opts.kernel.as_deref().map(KernelPath::parse).transpose().map_err(EngineError::from)?;
        let engine_opts = EngineOptions { threads: opts.threads, kernel };
        let engine = Model::load(gguf.content(), gguf.bytes(), &engine_opts)?;
        if engine.vocab_size() != tokenizer.vocab_size() {
            return Err(PipelineError::Settings(format!(
                "model {} has {} output logits but its tokenizer has {} tokens",
                model.id,
                engine.vocab_size(),
                tokenizer.vocab_size()
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(engine.threads())
            .thread_name(|i| format!("llmzip-quant-{i}"))
            .build()
            .map_err(|e| {
                PipelineError::Settings(format!("cannot start {} threads: {e}", engine.threads()))
            })?;
        Ok(Self { model, tokenizer, engine, pool })
    }

    /// The archive header for a compression run with these window settings.
    pub fn header(&self, context: u32, overlap: u32) -> Result<Header, PipelineError> {
        let max = self.engine.max_context();
        if context as usize > max {
            return Err(PipelineError::Settings(format!(
                "--context {context} exceeds model {}'s limit of {max} positions",
                self.model.id
            )));
        }
        super::window::Schedule::new(0, context as usize, overlap as usize)?;
        Ok(Header {
            model_id: self.model.id.clone(),
            model_sha256: self.model.sha256,
            tokenizer_fingerprint: self.tokenizer.fingerprint(),
            engine_version: ENGINE_VERSION,
            precision_bits: PRECISION_BITS as u8,
            context,
            overlap,
            start_token: self.tokenizer.start_token(),
            canary: self.canary()?,
        })
    }

    /// The first 8 bytes of the sha256 of every frequency table the model produces for [`CANARY_TEXT`]
    /// (start token first), as little-endian u32 values. Any difference in the engine's arithmetic that
    /// matters to decoding shows up here, so a decoder checks it before it decodes anything.
    /// Builds `tables[i]` from `rows[i]` for every row, in parallel.
    pub(super) fn quantize_rows<'r>(
        &self,
        rows: impl IntoIterator<Item = &'r [f32]>,
        tables: &mut [FreqTable],
    ) {
        use rayon::prelude::*;
        let rows: Vec<&[f32]> = rows.into_iter().collect();
        // The engine's kernel path, so that forcing one forces it for the quantizer too.
        let math = self.engine.kernels().math();
        self.pool.install(|| {
            rows.par_iter()
                .zip(tables.par_iter_mut())
                .for_each(|(row, table)| crate::quant::quantize(math, row, table));
        });
    }

    pub fn canary(&self) -> Result<[u8; 8], PipelineError> {
        let mut tokens = vec![self.tokenizer.start_token()];
        tokens.extend(self.tokenizer.encode(CANARY_TEXT.as_bytes())?);
        let vocab = self.engine.vocab_size();
        let mut cache = self.engine.new_cache(tokens.len());
        let mut logits = vec![0.0f32; tokens.len() * vocab];
        self.engine.prefill(&mut cache, &tokens, &mut logits)?;
        let mut table = FreqTable::new(vocab);
        let mut hasher = Sha256::new();
        for row in logits.chunks_exact(vocab) {
            crate::quant::quantize(self.engine.kernels().math(), row, &mut table);
            for s in 0..vocab as u32 {
                hasher.update(table.freq(s).to_le_bytes());
            }
        }
        let digest = hasher.finalize();
        let mut canary = [0u8; 8];
        canary.copy_from_slice(&digest[..8]);
        Ok(canary)
    }
}
