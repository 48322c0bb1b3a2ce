//! Everything a run needs before the first byte is coded: the model file, its tokenizer, the engine, and
//! the checks that make a decoder refuse an archive it cannot reproduce exactly.
//!
//! Setting a model up is the expensive part of a short job (resolve, sha256 of the whole file, weight
//! conversion, thread pools, the canary's forward pass), so it happens once per model per run: a
//! [`Session`] is opened once and coded with for every file of a command, and [`Sessions`] keeps the
//! decoder's session for as long as the archives name the same model.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::params::{self, CodingParams};
use super::prefill::{prefill, slice_rows};
use super::{CodecOptions, PipelineError};
use crate::container::{Framing, Header};
use crate::engine::{EngineOptions, EngineVersion, Model};
use crate::hex;
use crate::mix::MixPlan;
use crate::model::{GgufFile, ModelProgress, ModelSpec, NoModelProgress, Registry, ResolvedModel, Resolver};
use crate::quant::{self, FreqTable, Probabilities};
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
    /// This engine's canary per engine version ([`EngineVersion::ALL`] order), each computed once, when
    /// first asked for (see [`Session::canary`]): the newest when the session is opened.
    canaries: [OnceLock<[u8; 8]>; 2],
}

impl Session {
    /// Loads the model `opts.model` names (`None`: the registry default) for compression, reporting a
    /// download or the hashing of the file on `model_progress` ([`NoModelProgress`] for none).
    pub fn open(opts: &CodecOptions, model_progress: &dyn ModelProgress) -> Result<Self, PipelineError> {
        let spec = match opts.model.as_deref() {
            Some(s) => ModelSpec::parse(s),
            None => ModelSpec::Id(crate::model::default_id()?.to_string()),
        };
        let (model, gguf) = Resolver::from_env()?.open(&spec, model_progress)?;
        Self::load(model, &gguf, opts)
    }

    /// Loads the model an archive names (or the file `--model` points at, which must be the same model) and
    /// checks that this build reproduces the archive's arithmetic before anything is decoded.
    pub fn open_for(
        header: &Header,
        opts: &CodecOptions,
        model_progress: &dyn ModelProgress,
    ) -> Result<Self, PipelineError> {
        Self::check_versions(header)?;
        let spec = match opts.model.as_deref() {
            Some(s) => ModelSpec::parse(s),
            None => {
                if Registry::embedded()?.get(&header.model_id).is_err() {
                    return Err(PipelineError::LocalModelNeeded {
                        id: header.model_id.clone(),
                        sha256: hex::encode(&header.model_sha256),
                    });
                }
                ModelSpec::Id(header.model_id.clone())
            }
        };
        let (model, gguf) = Resolver::from_env()?.open(&spec, model_progress)?;
        crate::model::check_matches(&model, &header.model_id, &header.model_sha256)?;
        let session = Self::load(model, &gguf, opts)?;
        session.check_header(header)?;
        Ok(session)
    }

    /// Checks what a loaded session must share with an archive: the tables' precision (the rule's for
    /// this model's vocabulary), tokenizer and canary (the model file itself was checked by its sha256
    /// when it was resolved).
    pub fn check_header(&self, header: &Header) -> Result<(), PipelineError> {
        Self::check_versions(header)?;
        let vocab = self.engine.vocab_size();
        let ours = quant::precision_for(vocab);
        if u32::from(header.precision_bits) != ours {
            return Err(PipelineError::Precision { archive: header.precision_bits, ours: ours as u8, vocab });
        }
        // A version-3 header keeps the fingerprint's first bytes only (`Framing::tokenizer_bytes`).
        let ours = self.tokenizer.fingerprint();
        if !ours.starts_with(&header.tokenizer_fingerprint) {
            return Err(PipelineError::TokenizerMismatch {
                archive: hex::encode(&header.tokenizer_fingerprint),
                ours: hex::encode(&ours),
            });
        }
        let ours = self.canary(Self::engine_version(header)?)?;
        if ours != header.canary {
            return Err(PipelineError::Canary {
                archive: hex::encode(&header.canary),
                ours: hex::encode(&ours),
            });
        }
        Ok(())
    }

    /// The engine version an archive names, if this engine computes it.
    fn engine_version(header: &Header) -> Result<EngineVersion, PipelineError> {
        EngineVersion::from_number(header.engine_version).ok_or(PipelineError::EngineVersion {
            archive: header.engine_version,
            newest: EngineVersion::NEWEST.number(),
        })
    }

    fn check_versions(header: &Header) -> Result<(), PipelineError> {
        Self::engine_version(header)?;
        // Before any model is loaded: a precision the rule gives no vocabulary is refused at once (the
        // exact value is checked against the model's vocabulary in `check_header`).
        let p = u32::from(header.precision_bits);
        if p != quant::PRECISION_BITS && p != quant::LARGE_PRECISION_BITS {
            return Err(PipelineError::PrecisionUnknown { archive: header.precision_bits });
        }
        Ok(())
    }

    fn load(model: ResolvedModel, gguf: &GgufFile, opts: &CodecOptions) -> Result<Self, PipelineError> {
        let tokenizer = Tokenizer::from_gguf(gguf.content())?;
        let engine_opts = EngineOptions { threads: opts.threads, kernel: opts.kernel };
        let engine = Model::load(gguf.content(), gguf.bytes(), &engine_opts)?;
        if engine.vocab_size() != tokenizer.vocab_size() {
            return Err(PipelineError::VocabMismatch {
                model: model.id.clone(),
                logits: engine.vocab_size(),
                tokens: tokenizer.vocab_size(),
            });
        }
        let threads = engine.threads();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("llmzip-quant-{i}"))
            .build()
            .map_err(|source| PipelineError::ThreadPool { threads, source })?;
        let session = Self { model, tokenizer, engine, pool, canaries: Default::default() };
        session.canary(EngineVersion::NEWEST)?;
        Ok(session)
    }

    /// The coding parameters of a compression run with `opts`' schedule and mixer, checked against the
    /// model: the start token is the tokenizer's, the precision the rule's for the model's vocabulary
    /// ([`quant::precision_for`], the precision of every [`FreqTable::new`]). A slide above 0 selects
    /// the sliding schedule (with the start token as its sink), and the overlap is then unused.
    pub fn coding_params(&self, opts: &CodecOptions) -> Result<CodingParams, PipelineError> {
        let (context, overlap, slide, mix) = (opts.context, opts.overlap, opts.slide(), opts.mix);
        let max = self.engine.max_context();
        if context as usize > max {
            return Err(PipelineError::ContextTooLong { context, model: self.model.id.clone(), max });
        }
        let sliding = slide > 0;
        let params = CodingParams {
            context,
            overlap: if sliding { 0 } else { overlap },
            slide,
            sink: if sliding { params::SINK } else { 0 },
            start_token: self.tokenizer.start_token(),
            precision_bits: quant::precision_for(self.engine.vocab_size()) as u8,
            mix,
            engine: opts.engine,
        };
        params.check()?;
        Ok(params)
    }

    /// The archive header of a compression run with `params`, in `framing`.
    pub fn header(&self, params: &CodingParams, framing: Framing) -> Result<Header, PipelineError> {
        let mut header = Header {
            framing,
            model_id: self.model.id.clone(),
            model_sha256: self.model.sha256,
            tokenizer_fingerprint: self.tokenizer.fingerprint()[..framing.tokenizer_bytes()].to_vec(),
            engine_version: 0,
            precision_bits: 0,
            context: 0,
            overlap: 0,
            start_token: 0,
            canary: self.canary(params.engine)?,
            slide: 0,
            sink: 0,
            mixer: Vec::new(),
        };
        params.write_into(&mut header);
        Ok(header)
    }

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

    /// The softmax of every row ([`crate::quant::softmax`], which also forms each row's sum), in
    /// parallel: the mixer's inputs.
    pub(super) fn softmax_rows<'r>(
        &self,
        rows: impl IntoIterator<Item = &'r [f32]>,
        probs: &mut [Probabilities],
    ) {
        use rayon::prelude::*;
        let rows: Vec<&[f32]> = rows.into_iter().collect();
        let math = self.engine.kernels().math();
        self.pool.install(|| {
            rows.par_iter()
                .zip(probs.par_iter_mut())
                .for_each(|(row, p)| crate::quant::softmax(math, row, p));
        });
    }

    /// `tables[i]` from `probs[i]` blended per `plans[i]` ([`crate::mix::mixed_table`]), in parallel.
    pub(super) fn mixed_tables(&self, plans: &[MixPlan], probs: &[Probabilities], tables: &mut [FreqTable]) {
        use rayon::prelude::*;
        self.pool.install(|| {
            tables.par_iter_mut().zip(plans).zip(probs).for_each(|((t, plan), p)| {
                crate::mix::mixed_table(plan, p, t);
            });
        });
    }

    /// The first 8 bytes of the sha256 of every frequency table the model produces for [`CANARY_TEXT`]
    /// (start token first) with engine `version`, as little-endian u32 values. Any difference in the
    /// engine's arithmetic that matters to decoding shows up here, so a decoder checks it before it
    /// decodes anything. Computed once per session and version.
    pub fn canary(&self, version: EngineVersion) -> Result<[u8; 8], PipelineError> {
        let at = EngineVersion::ALL.iter().position(|&v| v == version).expect("every version has a slot");
        if let Some(&canary) = self.canaries[at].get() {
            return Ok(canary);
        }
        let canary = self.compute_canary(version)?;
        // Another thread may have computed it meanwhile: the same bytes.
        Ok(*self.canaries[at].get_or_init(|| canary))
    }

    fn compute_canary(&self, version: EngineVersion) -> Result<[u8; 8], PipelineError> {
        let mut tokens = vec![self.tokenizer.start_token()];
        tokens.extend(self.tokenizer.encode(CANARY_TEXT.as_bytes())?);
        let vocab = self.engine.vocab_size();
        let mut cache = self.engine.new_cache(tokens.len(), version);
        let mut logits = vec![0.0f32; slice_rows(vocab).min(tokens.len()) * vocab];
        let mut table = FreqTable::new(vocab);
        let mut hasher = Sha256::new();
        let _always_continues: ControlFlow<()> =
            prefill(&self.engine, &mut cache, &tokens, &mut logits, |_, rows| {
                for row in rows.chunks_exact(vocab) {
                    crate::quant::quantize(self.engine.kernels().math(), row, &mut table);
                    for s in 0..vocab as u32 {
                        hasher.update(table.freq(s).to_le_bytes());
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
        let digest = hasher.finalize();
        let mut canary = [0u8; 8];
        canary.copy_from_slice(&digest[..8]);
        Ok(canary)
    }
}

/// The sessions of one run: each opened on first use and kept while later streams need the same model,
/// so a command over many files resolves, hashes, loads and self-checks each model once.
///
/// One session is kept at a time (the archives of one command almost always name one model; a run that
/// alternates models reopens, as it did before). A session is identified by its model file's sha256,
/// the model's identity in the format; the id in a header only names it.
pub struct Sessions {
    opts: CodecOptions,
    model_progress: Box<dyn ModelProgress>,
    current: Option<Session>,
    /// Sessions opened so far (successfully or not), for `-vv` and for the tests that hold a command
    /// to one model set-up.
    opened: u64,
}

impl Sessions {
    /// No session yet; `opts` says which model, threads and kernel path to open with, and
    /// `model_progress` shows the model's download or hashing ([`NoModelProgress`] for none).
    pub fn new(opts: &CodecOptions, model_progress: impl ModelProgress + 'static) -> Self {
        Sessions { opts: opts.clone(), model_progress: Box::new(model_progress), current: None, opened: 0 }
    }

    /// Sessions that fetch a missing model without drawing anything (library users, fuzz targets).
    pub fn quiet(opts: &CodecOptions) -> Self {
        Self::new(opts, NoModelProgress)
    }

    /// How many times a model was set up (resolved, hashed, loaded, self-checked) so far.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// The session kept now, if any.
    pub fn current(&self) -> Option<&Session> {
        self.current.as_ref()
    }

    /// The session for compressing with `opts.model` (opened on the first call).
    pub fn for_compression(&mut self) -> Result<&Session, PipelineError> {
        if self.current.is_none() {
            self.model_progress.reset();
            self.opened += 1;
            let session = Session::open(&self.opts, &*self.model_progress);
            self.model_progress.finish_and_clear();
            self.current = Some(session?);
        }
        Ok(self.current.as_ref().expect("opened above"))
    }

    /// The session for decoding an archive with this header: the kept one when it has the archive's
    /// model (after the cheap tokenizer and canary checks), else a newly opened one.
    pub fn for_archive(&mut self, header: &Header) -> Result<&Session, PipelineError> {
        match &self.current {
            Some(s) if s.model.sha256 == header.model_sha256 => s.check_header(header)?,
            _ => {
                self.current = None;
                self.model_progress.reset();
                self.opened += 1;
                let session = Session::open_for(header, &self.opts, &*self.model_progress);
                self.model_progress.finish_and_clear();
                self.current = Some(session?);
            }
        }
        Ok(self.current.as_ref().expect("opened above"))
    }
}
