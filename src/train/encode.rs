//! `encode`: every rollout's frames through V, kept as mu/logvar series (the paper's
//! `series.npz`), so M trains without touching V or a single frame again.
//!
//! # Series file (`runs/<env>/series/<rollout name>.npz`)
//! | array     | dtype   | shape  | meaning |
//! |-----------|---------|--------|---------|
//! | `mu`      | float32 | [T, Z] | V's posterior mean of `obs[t]` |
//! | `logvar`  | float32 | [T, Z] | V's posterior log-variance of `obs[t]` |
//! | `actions` | float32 | [T, A] | as in the rollout |
//! | `rewards` | float32 | [T]    | as in the rollout |
//! | `dones`   | uint8   | [T]    | as in the rollout |
//! | `vae_id`  | uint64  | []     | the checksum of the V that encoded it; a series from another V is redone |

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use ndarray::{Array0, Array1, Array2};
use ndarray_npy::{NpzWriter, WriteNpzError};

use super::progress;
use super::rollout::{Rollout, array_names, list_rollouts, open_npz, read_array};
use super::vae::frames_u8_to_tensor;
use crate::model::bundle::{self, Expect, Part};
use crate::model::vae::ConvVae;

/// One rollout as V sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub mu: Array2<f32>,
    pub logvar: Array2<f32>,
    pub actions: Array2<f32>,
    pub rewards: Array1<f32>,
    pub dones: Array1<u8>,
    pub vae_id: u64,
}

impl Series {
    pub fn len(&self) -> usize {
        self.mu.nrows()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn z_size(&self) -> usize {
        self.mu.ncols()
    }

    /// Reads and checks a series file; every error names it.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let mut npz = open_npz(path)?;
        let names = array_names(path, &mut npz)?;
        let mu: Array2<f32> = read_array(path, &mut npz, &names, "mu", "float32 [T, Z]")?;
        let logvar: Array2<f32> = read_array(path, &mut npz, &names, "logvar", "float32 [T, Z]")?;
        let actions: Array2<f32> = read_array(path, &mut npz, &names, "actions", "float32 [T, A]")?;
        let rewards: Array1<f32> = read_array(path, &mut npz, &names, "rewards", "float32 [T]")?;
        let dones: Array1<u8> = read_array(path, &mut npz, &names, "dones", "uint8 [T]")?;
        let vae_id: Array0<u64> = read_array(path, &mut npz, &names, "vae_id", "uint64 scalar")?;
        let t = mu.nrows();
        if t == 0
            || logvar.dim() != mu.dim()
            || actions.nrows() != t
            || rewards.len() != t
            || dones.len() != t
        {
            bail!(
                "{}: inconsistent series (mu {:?}, logvar {:?}, actions {:?}, rewards {}, dones {})",
                path.display(),
                mu.dim(),
                logvar.dim(),
                actions.dim(),
                rewards.len(),
                dones.len()
            );
        }
        if mu.iter().chain(logvar.iter()).any(|v| !v.is_finite()) {
            bail!("{}: mu or logvar holds a non-finite value", path.display());
        }
        Ok(Self {
            mu,
            logvar,
            actions,
            rewards,
            dones,
            vae_id: vae_id.into_scalar(),
        })
    }

    /// Writes the series through a temporary file and a rename.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_npz(path, true, |npz| {
            npz.add_array("mu", &self.mu)?;
            npz.add_array("logvar", &self.logvar)?;
            npz.add_array("actions", &self.actions)?;
            npz.add_array("rewards", &self.rewards)?;
            npz.add_array("dones", &self.dones)?;
            npz.add_array("vae_id", &Array0::from_elem((), self.vae_id))
        })
    }
}

/// Writes an `.npz` at `path` through a temporary file, fsynced, and a rename, so a killed run
/// never leaves a half-written series under its name. `add` adds the arrays.
pub(crate) fn write_npz(
    path: &Path,
    compressed: bool,
    add: impl FnOnce(&mut NpzWriter<BufWriter<File>>) -> Result<(), WriteNpzError>,
) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> anyhow::Result<()> {
        let file = BufWriter::new(File::create(&tmp)?);
        let mut npz = if compressed {
            NpzWriter::new_compressed(file)
        } else {
            NpzWriter::new(file)
        };
        add(&mut npz)?;
        let mut w = npz.finish()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The series files in `dir`, sorted by name.
pub fn list_series(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "cannot read {}; run `dreamplay encode` first",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "npz"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The checksum of the V stored in `bundle_path`: what a series records as `vae_id`.
pub fn vae_id(bundle_path: &Path) -> anyhow::Result<u64> {
    let header = bundle::read_header(bundle_path)
        .with_context(|| "the run has no usable V; run `dreamplay train-vae` first".to_string())?;
    let entry = header
        .parts
        .iter()
        .find(|p| p.part == Part::Vae)
        .with_context(|| {
            format!(
                "{} holds no V; run `dreamplay train-vae` first",
                bundle_path.display()
            )
        })?;
    u64::from_str_radix(&entry.checksum, 16).with_context(|| {
        format!(
            "{}: bad V checksum {}",
            bundle_path.display(),
            entry.checksum
        )
    })
}

/// What `encode` did.
#[derive(Debug, Default)]
pub struct EncodeSummary {
    pub encoded: usize,
    pub skipped: usize,
    pub frames: usize,
    pub failed: Vec<String>,
    pub out_dir: PathBuf,
}

/// mu and logvar of `rollout`'s frames, `batch` frames at a time.
pub fn encode_rollout<B: Backend>(
    vae: &ConvVae<B>,
    rollout: &Rollout,
    batch: usize,
    device: &B::Device,
) -> (Array2<f32>, Array2<f32>) {
    let t = rollout.len();
    let zs = vae.z_size();
    let obs = rollout.obs();
    let flat = obs.as_slice().expect("rollout frames are contiguous");
    let frame_bytes = flat.len() / t;
    let (mut mu, mut logvar) = (Vec::with_capacity(t * zs), Vec::with_capacity(t * zs));
    for start in (0..t).step_by(batch.max(1)) {
        let end = (start + batch).min(t);
        let frames: Vec<&[u8]> = (start..end)
            .map(|i| &flat[i * frame_bytes..(i + 1) * frame_bytes])
            .collect();
        let (m, lv) = vae.encode(frames_u8_to_tensor::<B>(&frames, device));
        mu.extend(m.into_data().convert::<f32>().to_vec::<f32>().expect("f32"));
        logvar.extend(
            lv.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32"),
        );
    }
    (
        Array2::from_shape_vec((t, zs), mu).expect("shape"),
        Array2::from_shape_vec((t, zs), logvar).expect("shape"),
    )
}

/// Encodes every valid rollout in `data_dirs` with the V of `run_dir`'s bundle into
/// `run_dir/series/`, so that M trains on them all (for example rollouts of two data policies).
/// The first folder's series keep their rollout's file name; a later folder's are named
/// `<folder name>_<file name>`, so that equal file names in two folders do not collide. Series
/// already made by this V are kept; corrupt rollouts are reported and skipped.
pub fn encode_all<B: Backend>(
    data_dirs: &[PathBuf],
    run_dir: &Path,
    batch: usize,
    device: &B::Device,
) -> anyhow::Result<EncodeSummary> {
    let bundle_path = super::run_model_path(run_dir);
    let vae_id = vae_id(&bundle_path)?;
    let vae: ConvVae<B> = bundle::load_vae(&bundle_path, &Expect::default(), device)?;
    let mut sources = Vec::new();
    let mut failed = Vec::new();
    for (i, data_dir) in data_dirs.iter().enumerate() {
        let listing = list_rollouts(data_dir)
            .with_context(|| format!("cannot read the rollout folder {}", data_dir.display()))?;
        if listing.valid.is_empty() {
            bail!(
                "no valid rollouts in {}; run `dreamplay collect` first",
                data_dir.display()
            );
        }
        let prefix = match (i, data_dir.file_name()) {
            (0, _) => String::new(),
            (_, Some(name)) => format!("{}_", name.to_string_lossy()),
            (_, None) => format!("data{i}_"),
        };
        failed.extend(listing.corrupt.iter().map(|e| e.to_string()));
        sources.extend(listing.valid.into_iter().map(|info| (prefix.clone(), info)));
    }
    if sources.is_empty() {
        bail!("no rollout folder given to encode");
    }
    let out_dir = run_dir.join("series");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut summary = EncodeSummary {
        failed,
        out_dir: out_dir.clone(),
        ..Default::default()
    };
    let bar = progress::bar(sources.len() as u64, "rollouts");
    for f in &summary.failed {
        progress::say(&bar, format!("skipping: {f}"));
    }
    for (prefix, info) in &sources {
        let name = info.path.file_name().expect("a listed file has a name");
        let out = out_dir.join(format!("{prefix}{}", name.to_string_lossy()));
        let done = Series::read(&out).is_ok_and(|s| s.vae_id == vae_id && s.len() == info.len);
        if done {
            summary.skipped += 1;
        } else {
            match Rollout::read(&info.path) {
                Ok(rollout) => {
                    let (mu, logvar) = encode_rollout(&vae, &rollout, batch, device);
                    Series {
                        mu,
                        logvar,
                        actions: rollout.actions().clone(),
                        rewards: rollout.rewards().clone(),
                        dones: rollout.dones().clone(),
                        vae_id,
                    }
                    .write(&out)?;
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
    Ok(summary)
}
