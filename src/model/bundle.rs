//! The model file: one self-describing file per env holding V, M and C.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic       8 bytes  "DPWMODEL"
//! version     u32      FORMAT_VERSION
//! header_len  u32
//! header      JSON     BundleHeader: env, sizes, precision, provenance, and per part its
//!                      tensor shapes, byte offset (from the end of the header), length, checksum
//! parts       bytes    each tensor's values in module visit order, f16 or f32
//! ```
//! Each part is optional, so training can save V before M exists. `export` adds V's latent
//! statistics to the header and the latent map as a fourth part, f32 ([`super::atlas`]); a
//! bundle without them has the same bytes as before they existed. Beside the default C, a bundle
//! may hold extra Cs ([`NamedController`]), each a part of its own in f32, named in its part
//! entry, with its name and training record (the dream it was evolved in) in the header's
//! `extra_controllers`: the paper's table of one C per dream temperature ships in one file
//! ([`add_controller`]). A bundle without extra Cs has the same bytes as before they existed. Weights are plain values, not
//! backend records, so a file written on one backend loads on any other. Every failure (missing,
//! truncated, corrupt, mismatched) is a [`BundleError`] naming the file; nothing here panics on
//! bad input.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use serde::{Deserialize, Serialize};

use super::atlas::{AtlasError, LatentMap, LatentStats};
use super::controller::{Controller, ControllerKind};
use super::mdrnn::{DoneRule, MdnRnn, MdnRnnConfig};
use super::vae::{ConvVae, ConvVaeConfig};
use crate::envs::EnvKind;

/// The bundle's format version; bump on any layout change.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"DPWMODEL";
/// What errors call a file with [`MAGIC`].
const BUNDLE_KIND: &str = "world-model bundle";
/// Magic + version + header length.
const PREAMBLE: usize = 16;

/// The file a trained world model for `env` lives in, under `models_dir` (usually `models/`).
pub fn default_path(models_dir: &Path, env: EnvKind) -> PathBuf {
    models_dir.join(env.name()).join("world-model.bin")
}

/// The sizes that fix every tensor shape of V, M and C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub env: EnvKind,
    pub z_size: usize,
    pub action_size: usize,
    pub hidden_size: usize,
    pub n_gaussians: usize,
    /// See [`MdnRnnConfig::recurrent_bias`].
    pub recurrent_bias: bool,
}

impl ModelSpec {
    /// The paper's sizes: CarRacing z 32, action 3, LSTM 256; Doom z 64, action 1, LSTM 512
    /// (with the second LSTM bias vector that the paper's Doom parameter count implies).
    pub fn paper(env: EnvKind) -> Self {
        match env {
            EnvKind::CarRacing => Self {
                env,
                z_size: 32,
                action_size: 3,
                hidden_size: 256,
                n_gaussians: 5,
                recurrent_bias: false,
            },
            EnvKind::TakeCover => Self {
                env,
                z_size: 64,
                action_size: 1,
                hidden_size: 512,
                n_gaussians: 5,
                recurrent_bias: true,
            },
        }
    }

    pub fn vae_config(&self) -> ConvVaeConfig {
        ConvVaeConfig::new(self.z_size)
    }

    pub fn mdrnn_config(&self) -> MdnRnnConfig {
        MdnRnnConfig::new(self.z_size, self.action_size, self.hidden_size)
            .with_n_gaussians(self.n_gaussians)
            .with_recurrent_bias(self.recurrent_bias)
    }

    /// A zero controller of the paper's form for this env.
    pub fn controller(&self) -> Controller {
        Controller::new(
            ControllerKind::from(self.env),
            self.z_size,
            self.hidden_size,
        )
    }
}

/// How weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F16,
    F32,
}

impl Precision {
    fn bytes(self) -> usize {
        match self {
            Precision::F16 => 2,
            Precision::F32 => 4,
        }
    }
}

/// How one part was trained. Every field is optional; training fills what it knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Samples trained on (frames per epoch for V, steps per epoch for M, training episodes for C).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Final loss values by name, e.g. `"recon"`, `"kl"`, `"mdn"`, or `"fitness"` for C.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub final_losses: BTreeMap<String, f64>,
    /// When training ended, ISO 8601 / RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// C only: the dream it was evolved in (none: evolved in the real env, or not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dream: Option<EvolvedDream>,
}

/// The dream a controller was evolved in, so that the app can dream as C was trained to: a C
/// evolved where M's done head kills a tenth as often dies early in a dream at M's own odds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvolvedDream {
    pub tau: f32,
    /// The factor on M's done odds (1: as trained).
    pub done_odds: f32,
    /// How M's done head ended the dreams; on disk the flag `sampled_done` (true: drawn).
    #[serde(rename = "sampled_done", with = "done_rule_as_flag")]
    pub done_rule: DoneRule,
    /// Real steps M read before each dream forked (0: the paper's start at the first frame).
    pub context_steps: u32,
}

/// The done rule as the file's `sampled_done` flag, so files written before the rule had a name
/// read and write the same bytes.
mod done_rule_as_flag {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::DoneRule;

    pub fn serialize<S: Serializer>(rule: &DoneRule, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(*rule == DoneRule::Sample)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DoneRule, D::Error> {
        Ok(DoneRule::from_sampled(bool::deserialize(deserializer)?))
    }
}

/// An extra C beside the bundle's default one: its name (unique in the bundle) and how it was
/// evolved, the dream included.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedController {
    pub name: String,
    pub controller: Controller,
    pub training: TrainingInfo,
}

/// The name a C goes by: the dream it was evolved in, `"C, evolved at tau 0.5"`, or `"C"` when
/// the bundle records none. The default C is always named so.
pub fn controller_name(dream: Option<&EvolvedDream>) -> String {
    match dream {
        Some(dream) => format!("C, evolved at tau {}", dream.tau),
        None => "C".to_string(),
    }
}

/// An extra C's entry in the header: its name and its training record. Its weights are the part
/// of kind [`Part::ExtraController`] whose entry carries the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraControllerEntry {
    pub name: String,
    #[serde(default)]
    pub training: TrainingInfo,
}

/// Training provenance per part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<TrainingInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdrnn: Option<TrainingInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<TrainingInfo>,
}

/// Parameters on the host: each tensor's shape and values, in module visit order.
pub type HostTensors = Vec<(Vec<usize>, Vec<f32>)>;

/// The three parts of a world model, and the map of V's latent space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Vae,
    Mdrnn,
    Controller,
    /// [`LatentMap::to_tensors`]' tensors, always f32.
    #[serde(rename = "latent_map")]
    LatentMap,
    /// An extra C's parameter vector, always f32; its entry's `name` says which C.
    #[serde(rename = "extra_controller")]
    ExtraController,
    /// The flow model's autoencoder (a flow-model file's part, [`crate::model::flow::file`]).
    Autoencoder,
    /// The flow model's dynamics UNet.
    Dynamics,
    /// The flow model's done and reward heads.
    #[serde(rename = "end_heads")]
    EndHeads,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Vae => "V (vae)",
            Part::Mdrnn => "M (mdrnn)",
            Part::Controller => "C (controller)",
            Part::LatentMap => "the latent map (latent_map)",
            Part::ExtraController => "an extra C (extra_controller)",
            Part::Autoencoder => "the flow model's autoencoder (autoencoder)",
            Part::Dynamics => "the flow model's dynamics (dynamics)",
            Part::EndHeads => "the flow model's done and reward heads (end_heads)",
        })
    }
}

/// Where one part's bytes are and what they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartEntry {
    pub part: Part,
    pub precision: Precision,
    /// Every tensor's shape, in module visit order.
    pub shapes: Vec<Vec<usize>>,
    /// Byte offset from the end of the header.
    pub offset: u64,
    pub len: u64,
    /// FNV-1a 64 of the part's bytes, as 16 hex digits.
    pub checksum: String,
    /// An extra C's name ([`Part::ExtraController`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The JSON header. Readable without loading any weights: see [`read_header`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleHeader {
    pub format_version: u32,
    pub spec: ModelSpec,
    #[serde(default)]
    pub provenance: Provenance,
    pub parts: Vec<PartEntry>,
    /// V's latent statistics on the training data, when `export` had data to compute them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_stats: Option<LatentStats>,
    /// The extra Cs' names and training records, in the bundle's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_controllers: Vec<ExtraControllerEntry>,
}

impl BundleHeader {
    pub fn has(&self, part: Part) -> bool {
        self.parts.iter().any(|p| p.part == part)
    }

    /// Every C's name, the default C's first (when the bundle has one), then the extras'.
    pub fn controller_names(&self) -> Vec<String> {
        let default = self.has(Part::Controller).then(|| {
            let dream = self.provenance.controller.as_ref().and_then(|c| c.dream);
            controller_name(dream.as_ref())
        });
        default
            .into_iter()
            .chain(self.extra_controllers.iter().map(|e| e.name.clone()))
            .collect()
    }
}

/// A world model in memory. Parts are optional: a bundle may hold V alone, or V and M.
#[derive(Debug, Clone)]
pub struct WorldModel<B: Backend> {
    pub spec: ModelSpec,
    pub provenance: Provenance,
    pub vae: Option<ConvVae<B>>,
    pub mdrnn: Option<MdnRnn<B>>,
    pub controller: Option<Controller>,
    /// Per-dimension statistics of V's mu on the data (in the header).
    pub latent_stats: Option<LatentStats>,
    /// A 2D PCA map of V's mu on the data (a part of its own).
    pub latent_map: Option<LatentMap>,
    /// Cs beside the default one, each with its name and the dream it was evolved in.
    pub extra_controllers: Vec<NamedController>,
}

impl<B: Backend> WorldModel<B> {
    /// Fresh, randomly initialised V and M, and a zero C, of `spec`'s sizes.
    pub fn init(spec: ModelSpec, device: &B::Device) -> Self {
        Self {
            spec,
            provenance: Provenance::default(),
            vae: Some(spec.vae_config().init(device)),
            mdrnn: Some(spec.mdrnn_config().init(device)),
            controller: Some(spec.controller()),
            latent_stats: None,
            latent_map: None,
            extra_controllers: Vec::new(),
        }
    }

    /// The default C's name ([`controller_name`]), when there is a default C.
    pub fn controller_name(&self) -> Option<String> {
        let dream = self.provenance.controller.as_ref().and_then(|c| c.dream);
        self.controller
            .as_ref()
            .map(|_| controller_name(dream.as_ref()))
    }

    /// Every C with its name and training record: the default C first (when there is one), then
    /// the extra Cs in the bundle's order.
    pub fn named_controllers(&self) -> Vec<NamedController> {
        let default = self.controller.as_ref().map(|c| NamedController {
            name: self.controller_name().unwrap_or_default(),
            controller: c.clone(),
            training: self.provenance.controller.clone().unwrap_or_default(),
        });
        default
            .into_iter()
            .chain(self.extra_controllers.iter().cloned())
            .collect()
    }

    /// An empty model (no parts) of `spec`'s sizes.
    pub fn empty(spec: ModelSpec) -> Self {
        Self {
            spec,
            provenance: Provenance::default(),
            vae: None,
            mdrnn: None,
            controller: None,
            latent_stats: None,
            latent_map: None,
            extra_controllers: Vec::new(),
        }
    }
}

/// What went wrong with a model file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("model file {path} not found (expected a {expected})")]
    NotFound { path: PathBuf, expected: String },
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write model file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a dreamplay {kind}: expected it to start with {expected:?}, found {found:?}"
    )]
    NotABundle {
        path: PathBuf,
        /// What the file should have been: "world-model bundle" or "flow model".
        kind: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "model file {path} is truncated: expected at least {expected} bytes ({what}), found {found}"
    )]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "model file {path} has format version {found}, expected {expected}; re-train or convert it"
    )]
    Version {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("model file {path} has an unreadable header: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error("model file {path} does not match: expected {field} {expected}, found {found}")]
    Mismatch {
        path: PathBuf,
        field: String,
        expected: String,
        found: String,
    },
    #[error("model file {path} is corrupt in {part}: {reason}")]
    Corrupt {
        path: PathBuf,
        part: Part,
        reason: String,
    },
    #[error("model file {path} has no {part} yet (it holds: {present}); train it first")]
    MissingPart {
        path: PathBuf,
        part: Part,
        present: String,
    },
    #[error("model file {path} is corrupt in the C named {name:?}: {reason}")]
    CorruptController {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("model file {path}: two Cs named {name:?}, and each C needs a name of its own")]
    DuplicateController { path: PathBuf, name: String },
}

/// What the caller expects of a file; `None` fields are not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    pub env: Option<EnvKind>,
    pub z_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub action_size: Option<usize>,
}

impl Expect {
    /// Expect exactly this spec's env and sizes.
    pub fn spec(spec: &ModelSpec) -> Self {
        Self {
            env: Some(spec.env),
            z_size: Some(spec.z_size),
            hidden_size: Some(spec.hidden_size),
            action_size: Some(spec.action_size),
        }
    }

    /// Expect this env, any sizes.
    pub fn env(env: EnvKind) -> Self {
        Self {
            env: Some(env),
            ..Self::default()
        }
    }

    fn describe(&self) -> String {
        let env = self.env.map_or("dreamplay", |e| e.name());
        format!("{env} {BUNDLE_KIND}")
    }

    fn check(&self, path: &Path, spec: &ModelSpec) -> Result<(), BundleError> {
        let mismatch = |field: &str, expected: String, found: String| BundleError::Mismatch {
            path: path.to_path_buf(),
            field: field.to_string(),
            expected,
            found,
        };
        if let Some(env) = self.env
            && env != spec.env
        {
            return Err(mismatch("env", env.name().into(), spec.env.name().into()));
        }
        let sizes = [
            ("z size", self.z_size, spec.z_size),
            ("hidden size", self.hidden_size, spec.hidden_size),
            ("action size", self.action_size, spec.action_size),
        ];
        for (field, expected, found) in sizes {
            if let Some(expected) = expected
                && expected != found
            {
                return Err(mismatch(field, expected.to_string(), found.to_string()));
            }
        }
        Ok(())
    }
}

/// Writes `model` to `path` (creating parent directories), V and M in `precision`, C always in f32.
pub fn save<B: Backend>(
    model: &WorldModel<B>,
    path: &Path,
    precision: Precision,
) -> Result<(), BundleError> {
    check_controller_names(path, &model.named_controllers())?;
    write_bytes(path, &to_bytes(model, precision))
}

/// Every C's name is non-empty and its own.
fn check_controller_names(path: &Path, named: &[NamedController]) -> Result<(), BundleError> {
    let names: Vec<String> = named.iter().map(|c| c.name.clone()).collect();
    check_names(path, &names)
}

fn check_names(path: &Path, names: &[String]) -> Result<(), BundleError> {
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(BundleError::Header {
                path: path.to_path_buf(),
                reason: format!("C number {i} has an empty name"),
            });
        }
        if names[..i].contains(name) {
            return Err(BundleError::DuplicateController {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        }
    }
    Ok(())
}

/// Writes `model` over the run bundle at `path`: M in f32, and V in the precision its part
/// already has there (f32 when the file or its V is missing). The stages after `train-vae` do not
/// train V, and writing a V that came in f16 (a shipped model started from) back in f32 would
/// change its checksum, by which `encode`'s series name the V they were made with.
pub fn save_over_run<B: Backend>(model: &WorldModel<B>, path: &Path) -> Result<(), BundleError> {
    check_controller_names(path, &model.named_controllers())?;
    let vae_precision = read_header(path)
        .ok()
        .and_then(|h| h.parts.into_iter().find(|p| p.part == Part::Vae))
        .map_or(Precision::F32, |p| p.precision);
    write_bytes(path, &to_bytes_with(model, vae_precision, Precision::F32))
}

pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let write_err = |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // Write then rename, so a crash never leaves a half-written model under the real name.
    let tmp = path.with_extension("bin.partial");
    std::fs::write(&tmp, bytes).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

/// The bundle as bytes (what [`save`] writes).
pub fn to_bytes<B: Backend>(model: &WorldModel<B>, precision: Precision) -> Vec<u8> {
    to_bytes_with(model, precision, precision)
}

/// The bundle as bytes, V and M each in its own precision, C in f32.
fn to_bytes_with<B: Backend>(
    model: &WorldModel<B>,
    vae_precision: Precision,
    mdrnn_precision: Precision,
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut parts = Vec::new();
    let mut push = |part: Part, precision: Precision, tensors: HostTensors, name: Option<&str>| {
        parts.push(append_part(&mut body, part, precision, tensors, name));
    };
    if let Some(vae) = &model.vae {
        push(Part::Vae, vae_precision, collect_params(vae), None);
    }
    if let Some(rnn) = &model.mdrnn {
        push(Part::Mdrnn, mdrnn_precision, collect_params(rnn), None);
    }
    if let Some(c) = &model.controller {
        push(
            Part::Controller,
            Precision::F32,
            vec![(vec![c.param_count()], c.params().to_vec())],
            None,
        );
    }
    if let Some(map) = &model.latent_map {
        push(Part::LatentMap, Precision::F32, map.to_tensors(), None);
    }
    for extra in &model.extra_controllers {
        let c = &extra.controller;
        push(
            Part::ExtraController,
            Precision::F32,
            vec![(vec![c.param_count()], c.params().to_vec())],
            Some(&extra.name),
        );
    }
    let header = BundleHeader {
        format_version: FORMAT_VERSION,
        spec: model.spec,
        provenance: model.provenance.clone(),
        parts,
        latent_stats: model.latent_stats.clone(),
        extra_controllers: model
            .extra_controllers
            .iter()
            .map(|c| ExtraControllerEntry {
                name: c.name.clone(),
                training: c.training.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&header).expect("a BundleHeader always serialises");
    container_bytes(MAGIC, FORMAT_VERSION, &json, &body)
}

/// Appends `tensors` to `body` in `precision`; returns the part's entry (offset, length, checksum).
pub(crate) fn append_part(
    body: &mut Vec<u8>,
    part: Part,
    precision: Precision,
    tensors: HostTensors,
    name: Option<&str>,
) -> PartEntry {
    let start = body.len();
    for (_, values) in &tensors {
        encode_values(values, precision, body);
    }
    PartEntry {
        part,
        precision,
        shapes: tensors.into_iter().map(|(s, _)| s).collect(),
        offset: start as u64,
        len: (body.len() - start) as u64,
        checksum: format!("{:016x}", fnv1a(&body[start..])),
        name: name.map(str::to_string),
    }
}

/// The file layout the module docs describe, for any magic and header: bundles and flow models
/// share it.
pub(crate) fn container_bytes(magic: &[u8; 8], version: u32, json: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREAMBLE + json.len() + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(body);
    out
}

/// Reads only the header of the file at `path` (cheap: no weights are decoded).
pub fn read_header(path: &Path) -> Result<BundleHeader, BundleError> {
    let bytes = read_file(path, &Expect::default())?;
    parse_header(path, &bytes).map(|(h, _)| h)
}

/// Loads every part present in the file at `path` onto `device`, after checking it against
/// `expect`. Missing parts are `None`; use [`load_vae`] / [`load_mdrnn`] to require one.
pub fn load<B: Backend>(
    path: &Path,
    expect: &Expect,
    device: &B::Device,
) -> Result<WorldModel<B>, BundleError> {
    let bytes = read_file(path, expect)?;
    from_bytes(path, &bytes, expect, device)
}

/// Every C in the file at `path` with its name and training record (the default C first, then the
/// extra ones, as [`WorldModel::named_controllers`] lists them), and the header, without decoding
/// V or M: C is plain Rust and needs no backend.
pub fn load_controllers(
    path: &Path,
    expect: &Expect,
) -> Result<(BundleHeader, Vec<NamedController>), BundleError> {
    let bytes = read_file(path, expect)?;
    let (header, body) = parse_header(path, &bytes)?;
    let spec = header.spec;
    expect.check(path, &spec)?;
    let names = header.controller_names();
    let mut out = Vec::new();
    let default = header.parts.iter().filter(|e| e.part == Part::Controller);
    let extras = header.extra_controllers.iter().filter_map(|c| {
        header
            .parts
            .iter()
            .find(|e| e.part == Part::ExtraController && e.name.as_deref() == Some(&c.name))
    });
    for (entry, name) in default.chain(extras).zip(names) {
        let tensors = decode_part(path, entry, body)?;
        let mut controller = spec.controller();
        let values = tensors
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default();
        controller
            .set_params(&values)
            .map_err(|e| match entry.part {
                Part::Controller => corrupt(path, Part::Controller, e.to_string()),
                _ => BundleError::CorruptController {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    reason: e.to_string(),
                },
            })?;
        let training = match entry.part {
            Part::Controller => header.provenance.controller.clone(),
            _ => header
                .extra_controllers
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.training.clone()),
        };
        out.push(NamedController {
            name,
            controller,
            training: training.unwrap_or_default(),
        });
    }
    Ok((header, out))
}

/// One part's values as stored (checked against its checksum), without a backend; `None` when the
/// file has no such part.
pub fn part_values(
    path: &Path,
    part: Part,
) -> Result<Option<(Precision, HostTensors)>, BundleError> {
    let bytes = read_file(path, &Expect::default())?;
    let (header, body) = parse_header(path, &bytes)?;
    let Some(entry) = header.parts.iter().find(|e| e.part == part) else {
        return Ok(None);
    };
    Ok(Some((entry.precision, decode_part(path, entry, body)?)))
}

/// Loads V alone; an error if the file has none.
pub fn load_vae<B: Backend>(
    path: &Path,
    expect: &Expect,
    device: &B::Device,
) -> Result<ConvVae<B>, BundleError> {
    let model = load::<B>(path, expect, device)?;
    let present = present_parts(&model);
    model.vae.ok_or_else(|| BundleError::MissingPart {
        path: path.to_path_buf(),
        part: Part::Vae,
        present,
    })
}

/// Loads M alone; an error if the file has none.
pub fn load_mdrnn<B: Backend>(
    path: &Path,
    expect: &Expect,
    device: &B::Device,
) -> Result<MdnRnn<B>, BundleError> {
    let model = load::<B>(path, expect, device)?;
    let present = present_parts(&model);
    model.mdrnn.ok_or_else(|| BundleError::MissingPart {
        path: path.to_path_buf(),
        part: Part::Mdrnn,
        present,
    })
}

fn present_parts<B: Backend>(model: &WorldModel<B>) -> String {
    let mut names = Vec::new();
    if model.vae.is_some() {
        names.push("V");
    }
    if model.mdrnn.is_some() {
        names.push("M");
    }
    if model.controller.is_some() {
        names.push("C");
    }
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

fn read_file(path: &Path, expect: &Expect) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BundleError::NotFound {
                path: path.to_path_buf(),
                expected: expect.describe(),
            }
        } else {
            BundleError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Parses and checks the header; returns it and the body (the bytes after it).
fn parse_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(BundleHeader, &'a [u8]), BundleError> {
    let (header, body): (BundleHeader, _) =
        split_container(path, bytes, MAGIC, FORMAT_VERSION, BUNDLE_KIND)?;
    if header.format_version != FORMAT_VERSION {
        return Err(BundleError::Version {
            path: path.to_path_buf(),
            expected: FORMAT_VERSION,
            found: header.format_version,
        });
    }
    check_extents(path, &header.parts, bytes.len() - body.len(), body)?;
    check_extra_entries(path, &header)?;
    Ok((header, body))
}

/// Checks a container's magic, version and length, and parses its JSON header; returns the header
/// and the body.
pub(crate) fn split_container<'a, H: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    kind: &'static str,
) -> Result<(H, &'a [u8]), BundleError> {
    let p = || path.to_path_buf();
    if bytes.len() < magic.len() || &bytes[..magic.len()] != magic {
        let n = bytes.len().min(magic.len());
        return Err(BundleError::NotABundle {
            path: p(),
            kind,
            expected: String::from_utf8_lossy(magic).into_owned(),
            found: String::from_utf8_lossy(&bytes[..n]).into_owned(),
        });
    }
    if bytes.len() < PREAMBLE {
        return Err(BundleError::Truncated {
            path: p(),
            what: "the preamble".into(),
            expected: PREAMBLE as u64,
            found: bytes.len() as u64,
        });
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(BundleError::Version {
            path: p(),
            expected: version,
            found,
        });
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let header_end = PREAMBLE + header_len;
    if bytes.len() < header_end {
        return Err(BundleError::Truncated {
            path: p(),
            what: "the header".into(),
            expected: header_end as u64,
            found: bytes.len() as u64,
        });
    }
    let header: H =
        serde_json::from_slice(&bytes[PREAMBLE..header_end]).map_err(|e| BundleError::Header {
            path: p(),
            reason: e.to_string(),
        })?;
    Ok((header, &bytes[header_end..]))
}

/// Every part lies inside `body`, which starts `header_end` bytes into the file.
pub(crate) fn check_extents(
    path: &Path,
    parts: &[PartEntry],
    header_end: usize,
    body: &[u8],
) -> Result<(), BundleError> {
    let needed = parts
        .iter()
        .map(|e| e.offset.saturating_add(e.len))
        .max()
        .unwrap_or(0);
    if (body.len() as u64) < needed {
        return Err(BundleError::Truncated {
            path: path.to_path_buf(),
            what: "the weights the header lists".into(),
            expected: header_end as u64 + needed,
            found: (header_end + body.len()) as u64,
        });
    }
    Ok(())
}

/// The header's extra Cs and their parts match one to one, and every C's name is its own.
fn check_extra_entries(path: &Path, header: &BundleHeader) -> Result<(), BundleError> {
    let header_err = |reason: String| BundleError::Header {
        path: path.to_path_buf(),
        reason,
    };
    check_names(path, &header.controller_names())?;
    for entry in header
        .parts
        .iter()
        .filter(|e| e.part == Part::ExtraController)
    {
        let Some(name) = &entry.name else {
            return Err(header_err(
                "an extra_controller part has no name".to_string(),
            ));
        };
        if !header.extra_controllers.iter().any(|c| &c.name == name) {
            return Err(header_err(format!(
                "the extra_controller part {name:?} is not listed in extra_controllers"
            )));
        }
    }
    for c in &header.extra_controllers {
        let parts = header
            .parts
            .iter()
            .filter(|e| e.part == Part::ExtraController && e.name.as_deref() == Some(&c.name))
            .count();
        if parts != 1 {
            return Err(BundleError::CorruptController {
                path: path.to_path_buf(),
                name: c.name.clone(),
                reason: format!("expected one extra_controller part, found {parts}"),
            });
        }
    }
    Ok(())
}

/// Loads a bundle from bytes; `path` only names it in errors.
pub fn from_bytes<B: Backend>(
    path: &Path,
    bytes: &[u8],
    expect: &Expect,
    device: &B::Device,
) -> Result<WorldModel<B>, BundleError> {
    let (header, body) = parse_header(path, bytes)?;
    let spec = header.spec;
    expect.check(path, &spec)?;
    let mut model = WorldModel::<B>::empty(spec);
    model.provenance = header.provenance.clone();
    let mut extras: Vec<(String, Controller)> = Vec::new();
    if let Some(stats) = &header.latent_stats {
        if stats.dims.len() != spec.z_size {
            return Err(BundleError::Header {
                path: path.to_path_buf(),
                reason: format!(
                    "latent_stats has {} dimensions, the model's z has {}",
                    stats.dims.len(),
                    spec.z_size
                ),
            });
        }
        model.latent_stats = Some(stats.clone());
    }
    for entry in &header.parts {
        let tensors = decode_part(path, entry, body)?;
        match entry.part {
            Part::Vae => {
                model.vae = Some(load_params(
                    path,
                    Part::Vae,
                    spec.vae_config().init(device),
                    tensors,
                )?)
            }
            Part::Mdrnn => {
                model.mdrnn = Some(load_params(
                    path,
                    Part::Mdrnn,
                    spec.mdrnn_config().init(device),
                    tensors,
                )?)
            }
            Part::Controller => {
                let mut c = spec.controller();
                let Some((_, values)) = tensors.into_iter().next() else {
                    return Err(corrupt(
                        path,
                        Part::Controller,
                        "no parameter vector".into(),
                    ));
                };
                c.set_params(&values)
                    .map_err(|e| corrupt(path, Part::Controller, e.to_string()))?;
                model.controller = Some(c);
            }
            Part::LatentMap => {
                let map = LatentMap::from_tensors(tensors, spec.z_size)
                    .map_err(|e: AtlasError| corrupt(path, Part::LatentMap, e.to_string()))?;
                model.latent_map = Some(map);
            }
            Part::ExtraController => {
                // parse_header checked that the part is named and listed.
                let name = entry.name.clone().unwrap_or_default();
                let corrupt_c = |reason: String| BundleError::CorruptController {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    reason,
                };
                let Some((_, values)) = tensors.into_iter().next() else {
                    return Err(corrupt_c("no parameter vector".into()));
                };
                let mut controller = spec.controller();
                controller
                    .set_params(&values)
                    .map_err(|e| corrupt_c(e.to_string()))?;
                extras.push((name, controller));
            }
            Part::Autoencoder | Part::Dynamics | Part::EndHeads => {
                return Err(corrupt(
                    path,
                    entry.part,
                    "this part belongs in a flow-model file, not a world-model bundle".into(),
                ));
            }
        }
    }
    // In the header's order, each with its training record.
    for entry in &header.extra_controllers {
        if let Some(at) = extras.iter().position(|(name, _)| *name == entry.name) {
            let (name, controller) = extras.swap_remove(at);
            model.extra_controllers.push(NamedController {
                name,
                controller,
                training: entry.training.clone(),
            });
        }
    }
    Ok(model)
}

/// Adds `named` to the bundle at `path` as an extra C, leaving every other part's bytes as they
/// are (V, M and the default C keep their checksums). With `replace`, an extra C of the same name
/// gives way to it; otherwise a name already in the bundle (the default C's included) is an
/// error. Returns the new header.
pub fn add_controller(
    path: &Path,
    named: &NamedController,
    replace: bool,
) -> Result<BundleHeader, BundleError> {
    let bytes = read_file(path, &Expect::default())?;
    let (mut header, body) = parse_header(path, &bytes)?;
    let spec = header.spec;
    let c = &named.controller;
    let mismatch = |field: &str, expected: String, found: String| BundleError::Mismatch {
        path: path.to_path_buf(),
        field: format!("{field} of the C named {:?}", named.name),
        expected,
        found,
    };
    if c.kind() != ControllerKind::from(spec.env) {
        return Err(mismatch(
            "the controller form",
            format!("{:?}", ControllerKind::from(spec.env)),
            format!("{:?}", c.kind()),
        ));
    }
    if c.z_size() != spec.z_size {
        return Err(mismatch(
            "the z size",
            spec.z_size.to_string(),
            c.z_size().to_string(),
        ));
    }
    if c.hidden_size() != spec.hidden_size {
        return Err(mismatch(
            "the hidden size",
            spec.hidden_size.to_string(),
            c.hidden_size().to_string(),
        ));
    }
    let existing = header
        .extra_controllers
        .iter()
        .position(|e| e.name == named.name);
    let is_default = header
        .controller_names()
        .first()
        .is_some_and(|first| header.has(Part::Controller) && *first == named.name);
    if is_default || (existing.is_some() && !replace) {
        return Err(BundleError::DuplicateController {
            path: path.to_path_buf(),
            name: named.name.clone(),
        });
    }
    // The body again, part by part, less the C being replaced, then the new C at the end.
    let mut new_body = Vec::with_capacity(body.len() + 4 * c.param_count());
    let mut parts = Vec::with_capacity(header.parts.len() + 1);
    for mut entry in std::mem::take(&mut header.parts) {
        if entry.part == Part::ExtraController && entry.name.as_deref() == Some(&named.name) {
            continue;
        }
        let start = entry.offset as usize;
        let part_bytes = &body[start..start + entry.len as usize]; // in range: parse_header checked
        entry.offset = new_body.len() as u64;
        new_body.extend_from_slice(part_bytes);
        parts.push(entry);
    }
    let start = new_body.len();
    encode_values(c.params(), Precision::F32, &mut new_body);
    parts.push(PartEntry {
        part: Part::ExtraController,
        precision: Precision::F32,
        shapes: vec![vec![c.param_count()]],
        offset: start as u64,
        len: (new_body.len() - start) as u64,
        checksum: format!("{:016x}", fnv1a(&new_body[start..])),
        name: Some(named.name.clone()),
    });
    header.parts = parts;
    let entry = ExtraControllerEntry {
        name: named.name.clone(),
        training: named.training.clone(),
    };
    match existing {
        Some(at) => header.extra_controllers[at] = entry,
        None => header.extra_controllers.push(entry),
    }
    check_names(path, &header.controller_names())?;
    let json = serde_json::to_vec_pretty(&header).expect("a BundleHeader always serialises");
    let mut out = Vec::with_capacity(PREAMBLE + json.len() + new_body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&new_body);
    write_bytes(path, &out)?;
    Ok(header)
}

pub(crate) fn corrupt(path: &Path, part: Part, reason: String) -> BundleError {
    BundleError::Corrupt {
        path: path.to_path_buf(),
        part,
        reason,
    }
}

pub(crate) fn decode_part(
    path: &Path,
    entry: &PartEntry,
    body: &[u8],
) -> Result<HostTensors, BundleError> {
    let start = entry.offset as usize;
    let bytes = &body[start..start + entry.len as usize]; // in range: parse_header checked it
    // An extra C's errors name it.
    let corrupt = |path: &Path, part: Part, reason: String| match &entry.name {
        Some(name) => BundleError::CorruptController {
            path: path.to_path_buf(),
            name: name.clone(),
            reason,
        },
        None => corrupt(path, part, reason),
    };
    let found = format!("{:016x}", fnv1a(bytes));
    if found != entry.checksum {
        return Err(corrupt(
            path,
            entry.part,
            format!(
                "checksum mismatch: expected {}, found {found}",
                entry.checksum
            ),
        ));
    }
    let width = entry.precision.bytes();
    let total = entry
        .shapes
        .iter()
        .try_fold(0usize, |acc, s| {
            s.iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))?
                .checked_add(acc)
        })
        .and_then(|n| n.checked_mul(width));
    if total != Some(bytes.len()) {
        return Err(corrupt(
            path,
            entry.part,
            format!("shapes need {total:?} bytes, found {}", bytes.len()),
        ));
    }
    let mut out = Vec::with_capacity(entry.shapes.len());
    let mut offset = 0;
    for shape in &entry.shapes {
        let n: usize = shape.iter().product();
        let values = decode_values(&bytes[offset..offset + n * width], entry.precision);
        offset += n * width;
        out.push((shape.clone(), values));
    }
    Ok(out)
}

fn encode_values(values: &[f32], precision: Precision, out: &mut Vec<u8>) {
    match precision {
        Precision::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Precision::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes())),
    }
}

fn decode_values(bytes: &[u8], precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Precision::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
    }
}

/// FNV-1a, 64 bit: enough to catch corruption (not tampering).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Every float parameter's shape and values, in visit order.
pub fn collect_params<B: Backend, M: Module<B>>(module: &M) -> HostTensors {
    struct Collector(HostTensors);
    impl<B: Backend> ModuleVisitor<B> for Collector {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = param.val();
            let shape = tensor.dims().to_vec();
            let values = tensor
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 parameter data");
            self.0.push((shape, values));
        }
    }
    let mut collector = Collector(Vec::new());
    module.visit(&mut collector);
    collector.0
}

/// Replaces every float parameter of `module` with `tensors` (in visit order), checking shapes.
pub fn load_params<B: Backend, M: Module<B>>(
    path: &Path,
    part: Part,
    module: M,
    tensors: HostTensors,
) -> Result<M, BundleError> {
    struct Loader {
        tensors: <HostTensors as IntoIterator>::IntoIter,
        index: usize,
        error: Option<String>,
    }
    impl<B: Backend> ModuleMapper<B> for Loader {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let index = self.index;
            self.index += 1;
            if self.error.is_some() {
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let expected = tensor.dims().to_vec();
            let Some((shape, values)) = self.tensors.next() else {
                self.error = Some(format!("tensor {index} (shape {expected:?}) is missing"));
                return Param::from_mapped_value(id, tensor, mapper);
            };
            if shape != expected {
                self.error = Some(format!(
                    "tensor {index}: expected shape {expected:?}, found {shape:?}"
                ));
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let require_grad = tensor.is_require_grad();
            let mut loaded =
                Tensor::<B, D>::from_data(TensorData::new(values, shape), &tensor.device());
            if require_grad {
                loaded = loaded.require_grad();
            }
            Param::from_mapped_value(id, loaded, mapper)
        }
    }
    let n_given = tensors.len();
    let mut loader = Loader {
        tensors: tensors.into_iter(),
        index: 0,
        error: None,
    };
    let module = module.map(&mut loader);
    if let Some(reason) = loader.error {
        return Err(corrupt(path, part, reason));
    }
    if loader.index != n_given {
        return Err(corrupt(
            path,
            part,
            format!("expected {} tensors, found {n_given}", loader.index),
        ));
    }
    Ok(module)
}
