//! `encode-latents`: every rollout's frames through the flow model's autoencoder, kept as latent
//! series, so the dynamics trains without a frame; then the latents' per-channel statistics go
//! into the run's flow model ([`LatentStats`]), which the dynamics normalises by.
//!
//! # Latent series (`runs/<env>/flow/latents/<rollout name>.npz`)
//! | array            | dtype   | shape         | meaning |
//! |------------------|---------|---------------|---------|
//! | `latents`        | float32 | [T, C*S*S]    | the autoencoder's latent of `obs[t]`, channel-major, not normalised |
//! | `actions`        | float32 | [T, A]        | as in the rollout |
//! | `rewards`        | float32 | [T]           | as in the rollout |
//! | `dones`          | uint8   | [T]           | as in the rollout |
//! | `autoencoder_id` | uint64  | []            | the checksum of the encoder that made it; a series from another is redone |

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use ndarray::{Array0, Array1, Array2};

use super::flow_model_path;
use crate::model::bundle::Precision;
use crate::model::flow::{Autoencoder, FlowModel, LatentStats, file as flow_file};
use crate::train::encode::write_npz;
use crate::train::progress;
use crate::train::rollout::{Rollout, array_names, list_rollouts, open_npz, read_array};
use crate::train::vae::frames_u8_to_tensor;

/// One rollout as the autoencoder sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentSeries {
    pub latents: Array2<f32>,
    pub actions: Array2<f32>,
    pub rewards: Array1<f32>,
    pub dones: Array1<u8>,
    pub autoencoder_id: u64,
}

impl LatentSeries {
    pub fn len(&self) -> usize {
        self.latents.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads and checks a latent series; every error names the file. With `latent_len`, each
    /// latent must have that many numbers.
    pub fn read(path: &Path, latent_len: Option<usize>) -> anyhow::Result<Self> {
        let mut npz = open_npz(path)?;
        let names = array_names(path, &mut npz)?;
        let latents: Array2<f32> =
            read_array(path, &mut npz, &names, "latents", "float32 [T, C*S*S]")?;
        let actions: Array2<f32> = read_array(path, &mut npz, &names, "actions", "float32 [T, A]")?;
        let rewards: Array1<f32> = read_array(path, &mut npz, &names, "rewards", "float32 [T]")?;
        let dones: Array1<u8> = read_array(path, &mut npz, &names, "dones", "uint8 [T]")?;
        let id: Array0<u64> =
            read_array(path, &mut npz, &names, "autoencoder_id", "uint64 scalar")?;
        let t = latents.nrows();
        if t == 0 || actions.nrows() != t || rewards.len() != t || dones.len() != t {
            bail!(
                "{}: inconsistent latent series (latents {:?}, actions {:?}, rewards {}, dones {})",
                path.display(),
                latents.dim(),
                actions.dim(),
                rewards.len(),
                dones.len()
            );
        }
        if let Some(len) = latent_len
            && latents.ncols() != len
        {
            bail!(
                "{}: latents of {} numbers, the flow model's have {len}; run `dreamplay encode-latents` again",
                path.display(),
                latents.ncols()
            );
        }
        if latents.iter().any(|v| !v.is_finite()) {
            bail!("{}: the latents hold a non-finite value", path.display());
        }
        Ok(Self {
            latents,
            actions,
            rewards,
            dones,
            autoencoder_id: id.into_scalar(),
        })
    }

    /// Writes the series through a temporary file and a rename; uncompressed, so that each start
    /// of train-flow reads them without inflating them.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_npz(path, false, |npz| {
            npz.add_array("latents", &self.latents)?;
            npz.add_array("actions", &self.actions)?;
            npz.add_array("rewards", &self.rewards)?;
            npz.add_array("dones", &self.dones)?;
            npz.add_array(
                "autoencoder_id",
                &Array0::from_elem((), self.autoencoder_id),
            )
        })
    }
}

/// The run's latent series folder.
pub fn latents_dir(run: &Path) -> PathBuf {
    run.join("flow").join("latents")
}

/// The latents of `rollout`'s frames, `batch` frames at a time: `[T, C*S*S]`.
pub fn encode_rollout<B: Backend>(
    ae: &Autoencoder<B>,
    rollout: &Rollout,
    batch: usize,
    device: &B::Device,
) -> Array2<f32> {
    let t = rollout.len();
    let flat = rollout
        .obs()
        .as_slice()
        .expect("rollout frames are contiguous");
    let frame_bytes = flat.len() / t.max(1);
    let mut out = Vec::new();
    for start in (0..t).step_by(batch.max(1)) {
        let end = (start + batch).min(t);
        let frames: Vec<&[u8]> = (start..end)
            .map(|i| &flat[i * frame_bytes..(i + 1) * frame_bytes])
            .collect();
        let latents = ae.encode(frames_u8_to_tensor::<B>(&frames, device));
        out.extend(
            latents
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32"),
        );
    }
    let len = out.len() / t.max(1);
    Array2::from_shape_vec((t, len), out).expect("whole latents")
}

/// What `encode-latents` did.
#[derive(Debug, Default)]
pub struct LatentSummary {
    pub encoded: usize,
    pub skipped: usize,
    pub frames: usize,
    pub failed: Vec<String>,
    pub out_dir: PathBuf,
    pub stats: Option<LatentStats>,
}

/// Per-channel running sums for [`LatentStats`], in f64.
struct ChannelMoments {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: f64,
}

impl ChannelMoments {
    fn new(channels: usize) -> Self {
        Self {
            sum: vec![0.0; channels],
            sum_sq: vec![0.0; channels],
            count: 0.0,
        }
    }

    fn add(&mut self, latents: &Array2<f32>) {
        let channels = self.sum.len();
        for row in latents.rows() {
            let plane = row.len() / channels;
            for (c, chunk) in row
                .as_slice()
                .expect("rows of a standard array")
                .chunks(plane)
                .enumerate()
            {
                for &v in chunk {
                    self.sum[c] += f64::from(v);
                    self.sum_sq[c] += f64::from(v) * f64::from(v);
                }
            }
            self.count += plane as f64;
        }
    }

    fn stats(&self) -> Option<LatentStats> {
        if self.count == 0.0 {
            return None;
        }
        let mean: Vec<f64> = self.sum.iter().map(|s| s / self.count).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&mean)
            // A floor keeps a dead channel from dividing by zero.
            .map(|(sq, m)| ((sq / self.count - m * m).max(0.0).sqrt()).max(1e-3) as f32)
            .collect();
        Some(LatentStats {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        })
    }
}

/// Encodes every valid rollout in `data_dir` with the run's autoencoder into
/// `run_dir/flow/latents/`, then writes the latents' statistics into the run's flow model.
/// Series already made by this autoencoder are kept (and still counted in the statistics).
pub fn encode_latents<B: Backend>(
    data_dir: &Path,
    run_dir: &Path,
    batch: usize,
    device: &B::Device,
) -> anyhow::Result<LatentSummary> {
    let flow_path = flow_model_path(run_dir);
    let no_autoencoder = || {
        format!(
            "{} holds no autoencoder; run `dreamplay train-autoencoder` first",
            flow_path.display()
        )
    };
    if !flow_path.is_file() {
        bail!(no_autoencoder());
    }
    let mut model: FlowModel<B> = flow_file::load(&flow_path, None, device)?;
    let ae = model.autoencoder.clone().with_context(no_autoencoder)?;
    // The encoder's checksum, not the whole autoencoder's: a fine-tuned decoder keeps the series.
    let id = ae.encoder_checksum();
    let latent_len = model.spec.latent_len();
    let listing = list_rollouts(data_dir)
        .with_context(|| format!("cannot read the rollout folder {}", data_dir.display()))?;
    if listing.valid.is_empty() {
        bail!(
            "no valid rollouts in {}; run `dreamplay collect` first",
            data_dir.display()
        );
    }
    let out_dir = latents_dir(run_dir);
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut summary = LatentSummary {
        failed: listing.corrupt.iter().map(|e| e.to_string()).collect(),
        out_dir: out_dir.clone(),
        ..Default::default()
    };
    let mut moments = ChannelMoments::new(model.spec.latent_channels);
    let bar = progress::bar(listing.valid.len() as u64, "rollouts");
    for f in &summary.failed {
        progress::say(&bar, format!("skipping: {f}"));
    }
    for info in &listing.valid {
        let name = info.path.file_name().expect("a listed file has a name");
        let out = out_dir.join(name);
        let kept = LatentSeries::read(&out, Some(latent_len))
            .ok()
            .filter(|s| s.autoencoder_id == id && s.len() == info.len);
        if let Some(series) = kept {
            moments.add(&series.latents);
            summary.skipped += 1;
        } else {
            match Rollout::read(&info.path) {
                Ok(rollout) => {
                    let series = LatentSeries {
                        latents: encode_rollout(&ae, &rollout, batch, device),
                        actions: rollout.actions().clone(),
                        rewards: rollout.rewards().clone(),
                        dones: rollout.dones().clone(),
                        autoencoder_id: id,
                    };
                    series.write(&out)?;
                    moments.add(&series.latents);
                    summary.encoded += 1;
                    summary.frames += rollout.len();
                }
                Err(e) => {
                    progress::say(&bar, format!("skipping: {e}"));
                    summary.failed.push(e.to_string());
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    model.latent_stats = moments.stats();
    summary.stats = model.latent_stats.clone();
    flow_file::save(&model, &flow_path, Precision::F32)?;
    Ok(summary)
}
