//! The flow model's file, `flow-model.bin`, next to the bundle (`world-model.bin`).
//!
//! The bundle's layout ([`crate::model::bundle`]) with its own magic, `DPFLOWMD`, and header:
//! the [`FlowSpec`], the latent statistics, how each part was trained, and per part its tensor
//! shapes, offset, length and checksum. A file of its own, because the two families train
//! independently: retraining V (which clears M and C from the run's bundle) leaves the flow model
//! alone, and a bundle without a flow model keeps the bytes it had. Every failure is a
//! [`BundleError`] naming the file; nothing here panics on bad input.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{FlowModel, FlowProvenance, FlowSpec, LatentStats};
use crate::envs::EnvKind;
use crate::model::bundle::{
    self, BundleError, HostTensors, Part, PartEntry, Precision, collect_params, load_params,
};

/// The flow-model file's format version; bump on any layout change.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"DPFLOWMD";
const KIND: &str = "flow model";
/// The file's name, in a run folder and under `models/<env>/`.
pub const FILE_NAME: &str = "flow-model.bin";

/// The flow model beside the bundle at `bundle_path`.
pub fn beside(bundle_path: &Path) -> PathBuf {
    bundle_path.with_file_name(FILE_NAME)
}

/// The JSON header, readable without decoding any weights ([`read_header`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowHeader {
    pub format_version: u32,
    pub spec: FlowSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_stats: Option<LatentStats>,
    #[serde(default)]
    pub provenance: FlowProvenance,
    pub parts: Vec<PartEntry>,
}

impl FlowHeader {
    pub fn has(&self, part: Part) -> bool {
        self.parts.iter().any(|p| p.part == part)
    }
}

/// Writes `model` to `path` (creating folders; atomically), its weights in `precision`.
pub fn save<B: Backend>(
    model: &FlowModel<B>,
    path: &Path,
    precision: Precision,
) -> Result<(), BundleError> {
    bundle::write_bytes(path, &to_bytes(model, precision))
}

/// The file's bytes (what [`save`] writes).
pub fn to_bytes<B: Backend>(model: &FlowModel<B>, precision: Precision) -> Vec<u8> {
    let mut body = Vec::new();
    let mut parts = Vec::new();
    let mut push = |part: Part, tensors: HostTensors| {
        parts.push(bundle::append_part(
            &mut body, part, precision, tensors, None,
        ));
    };
    if let Some(ae) = &model.autoencoder {
        push(Part::Autoencoder, collect_params(ae));
    }
    if let Some(dynamics) = &model.dynamics {
        push(Part::Dynamics, collect_params(dynamics));
    }
    if let Some(heads) = &model.end_heads {
        push(Part::EndHeads, collect_params(heads));
    }
    let header = FlowHeader {
        format_version: FORMAT_VERSION,
        spec: model.spec,
        latent_stats: model.latent_stats.clone(),
        provenance: model.provenance.clone(),
        parts,
    };
    let json = serde_json::to_vec_pretty(&header).expect("a FlowHeader always serialises");
    bundle::container_bytes(MAGIC, FORMAT_VERSION, &json, &body)
}

/// Whether the file at `path` begins as a flow-model file does (false when it cannot be read).
pub fn looks_like_flow_model(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == MAGIC)
}

/// Reads only the header (no weights are decoded).
pub fn read_header(path: &Path) -> Result<FlowHeader, BundleError> {
    let bytes = read(path, None)?;
    parse(path, &bytes).map(|(header, _)| header)
}

/// Loads every part in the file at `path`; with `env`, the file must be that env's. Missing parts
/// are `None`.
pub fn load<B: Backend>(
    path: &Path,
    env: Option<EnvKind>,
    device: &B::Device,
) -> Result<FlowModel<B>, BundleError> {
    let bytes = read(path, env)?;
    from_bytes(path, &bytes, env, device)
}

/// [`load`] from bytes; `path` only names the file in errors.
pub fn from_bytes<B: Backend>(
    path: &Path,
    bytes: &[u8],
    env: Option<EnvKind>,
    device: &B::Device,
) -> Result<FlowModel<B>, BundleError> {
    let (header, body) = parse(path, bytes)?;
    let spec = header.spec;
    if let Some(env) = env
        && env != spec.env
    {
        return Err(BundleError::Mismatch {
            path: path.to_path_buf(),
            field: "env".into(),
            expected: env.name().into(),
            found: spec.env.name().into(),
        });
    }
    let mut model = FlowModel::<B>::empty(spec);
    model.provenance = header.provenance;
    model.latent_stats = header.latent_stats;
    for entry in &header.parts {
        let tensors = bundle::decode_part(path, entry, body)?;
        match entry.part {
            Part::Autoencoder => {
                let fresh = spec.autoencoder_config().init(device);
                model.autoencoder = Some(load_params(path, entry.part, fresh, tensors)?);
            }
            Part::Dynamics => {
                let fresh = spec.dynamics_config().init(device);
                model.dynamics = Some(load_params(path, entry.part, fresh, tensors)?);
            }
            Part::EndHeads => {
                let fresh = spec.end_heads_config().init(device);
                model.end_heads = Some(load_params(path, entry.part, fresh, tensors)?);
            }
            other => {
                return Err(bundle::corrupt(
                    path,
                    other,
                    "this part belongs in a world-model bundle, not a flow-model file".into(),
                ));
            }
        }
    }
    Ok(model)
}

fn read(path: &Path, env: Option<EnvKind>) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => BundleError::NotFound {
            path: path.to_path_buf(),
            expected: match env {
                Some(env) => format!("{env} {KIND}"),
                None => KIND.to_string(),
            },
        },
        _ => BundleError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The header, checked (spec, statistics, part extents), and the body.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(FlowHeader, &'a [u8]), BundleError> {
    let (header, body): (FlowHeader, _) =
        bundle::split_container(path, bytes, MAGIC, FORMAT_VERSION, KIND)?;
    let header_err = |reason: String| BundleError::Header {
        path: path.to_path_buf(),
        reason,
    };
    if header.format_version != FORMAT_VERSION {
        return Err(BundleError::Version {
            path: path.to_path_buf(),
            expected: FORMAT_VERSION,
            found: header.format_version,
        });
    }
    header.spec.check().map_err(header_err)?;
    if let Some(stats) = &header.latent_stats {
        let channels = header.spec.latent_channels;
        let sane = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if stats.mean.len() != channels || stats.std.len() != channels {
            return Err(header_err(format!(
                "latent_stats has {} means and {} deviations for a {channels}-channel latent",
                stats.mean.len(),
                stats.std.len()
            )));
        }
        if !sane(&stats.mean) || !sane(&stats.std) || stats.std.iter().any(|&s| s <= 0.0) {
            return Err(header_err(
                "latent_stats holds a non-finite mean or a deviation that is not positive".into(),
            ));
        }
    }
    bundle::check_extents(path, &header.parts, bytes.len() - body.len(), body)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn tiny_spec() -> FlowSpec {
        FlowSpec {
            autoencoder_widths: [8, 8],
            unet_widths: [8, 8, 16],
            cond_size: 16,
            ..FlowSpec::default_for(EnvKind::TakeCover)
        }
    }

    fn tiny_model() -> FlowModel<Flex> {
        let device = Default::default();
        let spec = tiny_spec();
        let mut model = FlowModel::<Flex>::empty(spec);
        model.autoencoder = Some(spec.autoencoder_config().init(&device));
        model.latent_stats = Some(LatentStats {
            mean: vec![0.1; 4],
            std: vec![0.5; 4],
        });
        model
    }

    #[test]
    fn a_flow_model_round_trips_and_its_header_reads_alone() {
        let model = tiny_model();
        let bytes = to_bytes(&model, Precision::F32);
        let path = Path::new("flow-model.bin");
        let back = from_bytes::<Flex>(path, &bytes, Some(EnvKind::TakeCover), &Default::default())
            .unwrap();
        assert_eq!(back.spec, model.spec);
        assert_eq!(back.latent_stats, model.latent_stats);
        assert!(back.dynamics.is_none());
        let (a, b) = (
            collect_params(model.autoencoder.as_ref().unwrap()),
            collect_params(back.autoencoder.as_ref().unwrap()),
        );
        assert_eq!(a, b, "f32 weights come back bit for bit");
        assert_eq!(
            to_bytes(&back, Precision::F32),
            bytes,
            "and so do the bytes"
        );
    }

    #[test]
    fn bad_files_are_errors_that_name_them() {
        let device = Default::default();
        let path = Path::new("runs/x/flow-model.bin");
        let good = to_bytes(&tiny_model(), Precision::F16);
        let load = |bytes: &[u8], env| from_bytes::<Flex>(path, bytes, env, &device).map(|_| ());

        let err = load(b"DPWMODEL\x01\0\0\0", None).unwrap_err().to_string();
        assert!(err.contains("not a dreamplay flow model"), "{err}");
        let err = load(&good[..good.len() - 10], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = load(&good, Some(EnvKind::CarRacing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected env car-racing"), "{err}");

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let err = load(&flipped, None).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");

        // A header whose latent shape this build cannot make: refused before any tensor is made.
        let (from, to) = (b"\"latent_side\": 16", b"\"latent_side\": 15");
        let at = good.windows(from.len()).position(|w| w == from).unwrap();
        let mut odd = good.clone();
        odd[at..at + to.len()].copy_from_slice(to);
        let err = load(&odd, None).unwrap_err().to_string();
        assert!(err.contains("latent_side 15"), "{err}");
        assert!(err.contains("runs/x/flow-model.bin"), "{err}");
    }
}
