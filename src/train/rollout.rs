//! The rollout file: one episode of (observation, action, reward, done) as one compressed `.npz`.
//!
//! # Format
//! A NumPy `.npz` (a zip of `.npy` arrays, deflate-compressed), readable with `np.load(path)`:
//!
//! | array      | dtype   | shape          | meaning |
//! |------------|---------|----------------|---------|
//! | `obs`      | uint8   | [T, 64, 64, 3] | `obs[t]`: the 64x64 RGB observation BEFORE `actions[t]` (`obs[0]` is the reset frame) |
//! | `actions`  | float32 | [T, A]         | `actions[t]`: the action taken on seeing `obs[t]` (A = 3 for CarRacing, 1 for Take Cover) |
//! | `rewards`  | float32 | [T]            | `rewards[t]`: the reward that `actions[t]` earned |
//! | `dones`    | uint8   | [T]            | `dones[t]` = 1 if the env reported `terminated` after `actions[t]`, else 0 |
//! | `env_seed` | uint64  | []             | optional: the seed the env was reset with, so the rollout can be replayed |
//! | `sprite_mask` | uint8 | [T, 64, 64]  | optional: 1 where `obs[t]` shows an imp (Take Cover), for `train-vae --sprite-weight` |
//!
//! So `(obs[t], actions[t]) -> (obs[t + 1], rewards[t], dones[t])` is one transition, the pairs M learns
//! P(z_{t+1} | z_t, a_t) from. The observation after the last action is not stored (as in the paper's
//! data): T frames give T - 1 frame-to-frame transitions, and the last step's reward and done.
//! A time limit (`truncated`) is not a done: the episode was cut, the state was not terminal.
//!
//! # Safety
//! [`Rollout::write`] writes `name.npz.tmp`, fsyncs it, and renames it over `name.npz`, so a killed run
//! never leaves a half-written file under a finished name. Every read validates the archive and the
//! arrays and returns a [`RolloutError`] naming the file; nothing here panics on bad input.
//!
//! # Streaming
//! One file is one episode (at most a few tens of MB of frames). Training reads rollout by rollout:
//! [`list_rollouts`] finds the valid files cheaply ([`RolloutInfo::read`] skips the frames), and
//! [`Rollout::read`] loads one episode at a time.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array0, Array1, Array2, Array3, Array4, ArrayView2, ArrayView3, Axis};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpzError, WriteNpzError};

use crate::envs::{Frame, OBS_SIZE};

/// Side of a stored frame (pixels): the env's observation.
pub const FRAME_SIDE: usize = OBS_SIZE as usize;
/// Colour channels per pixel (RGB).
pub const FRAME_CHANNELS: usize = 3;
/// Bytes in one stored frame.
pub const FRAME_BYTES: usize = FRAME_SIDE * FRAME_SIDE * FRAME_CHANNELS;
/// File extension of a finished rollout.
pub const ROLLOUT_EXTENSION: &str = "npz";
/// Suffix appended to the final name while a rollout is being written.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Array names inside the `.npz` (NumPy adds `.npy` in the archive; `np.load` strips it).
const OBS: &str = "obs";
const ACTIONS: &str = "actions";
const REWARDS: &str = "rewards";
const DONES: &str = "dones";
const ENV_SEED: &str = "env_seed";
const SPRITE_MASK: &str = "sprite_mask";

/// What is wrong with a rollout's arrays, wherever they came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("the rollout is empty (0 steps)")]
    Empty,
    #[error("obs has shape {shape:?}, expected [T, {FRAME_SIDE}, {FRAME_SIDE}, {FRAME_CHANNELS}]")]
    FrameShape { shape: Vec<usize> },
    #[error("actions has shape {shape:?}: at least one action value per step is needed")]
    NoActionValues { shape: Vec<usize> },
    #[error("{array} has {len} steps but obs has {expected}")]
    LengthMismatch {
        array: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("{array}[{index}] is {value}, not a finite number")]
    NotFinite {
        array: &'static str,
        index: usize,
        value: f32,
    },
    #[error("dones[{index}] is {value}, expected 0 or 1")]
    BadDone { index: usize, value: u8 },
    #[error("sprite_mask has shape {shape:?}, expected [{steps}, {FRAME_SIDE}, {FRAME_SIDE}]")]
    MaskShape { shape: Vec<usize>, steps: usize },
}

/// A rollout file that cannot be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{}: cannot open: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: not a readable .npz archive (truncated or corrupt?): {source}", path.display())]
    Archive { path: PathBuf, source: ReadNpzError },
    #[error("{}: array '{name}' is missing (found: {found})", path.display())]
    MissingArray {
        path: PathBuf,
        name: &'static str,
        found: String,
    },
    #[error("{}: array '{name}' cannot be read as {expected} (corrupt or wrong type?): {source}", path.display())]
    BadArray {
        path: PathBuf,
        name: &'static str,
        expected: &'static str,
        source: ReadNpzError,
    },
    #[error("{}: {source}", path.display())]
    Invalid { path: PathBuf, source: FormatError },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: cannot encode the arrays: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: WriteNpzError,
    },
}

impl RolloutError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            RolloutError::Open { path, .. }
            | RolloutError::Archive { path, .. }
            | RolloutError::MissingArray { path, .. }
            | RolloutError::BadArray { path, .. }
            | RolloutError::Invalid { path, .. }
            | RolloutError::Write { path, .. }
            | RolloutError::Encode { path, .. } => path,
        }
    }
}

/// One episode, validated: every array has the same number of steps T >= 1, frames are 64x64x3, actions
/// and rewards are finite, dones are 0 or 1. See the module doc for the meaning of each array.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    obs: Array4<u8>,
    actions: Array2<f32>,
    rewards: Array1<f32>,
    dones: Array1<u8>,
    env_seed: Option<u64>,
    sprite_mask: Option<Array3<u8>>,
}

impl Rollout {
    /// Checks the arrays against the format and builds a rollout.
    pub fn new(
        obs: Array4<u8>,
        actions: Array2<f32>,
        rewards: Array1<f32>,
        dones: Array1<u8>,
        env_seed: Option<u64>,
    ) -> Result<Self, FormatError> {
        let shape = obs.shape();
        if shape[1..] != [FRAME_SIDE, FRAME_SIDE, FRAME_CHANNELS] {
            return Err(FormatError::FrameShape {
                shape: shape.to_vec(),
            });
        }
        let steps = shape[0];
        if steps == 0 {
            return Err(FormatError::Empty);
        }
        if actions.ncols() == 0 {
            return Err(FormatError::NoActionValues {
                shape: actions.shape().to_vec(),
            });
        }
        check_small_arrays(steps, &actions, &rewards, &dones)?;
        Ok(Rollout {
            obs,
            actions,
            rewards,
            dones,
            env_seed,
            sprite_mask: None,
        })
    }

    /// Adds the renderer's sprite mask ([T, 64, 64], see [`crate::envs::Env::sprite_mask`]).
    pub fn with_sprite_mask(mut self, mask: Array3<u8>) -> Result<Self, FormatError> {
        if mask.shape() != [self.len(), FRAME_SIDE, FRAME_SIDE] {
            return Err(FormatError::MaskShape {
                shape: mask.shape().to_vec(),
                steps: self.len(),
            });
        }
        self.sprite_mask = Some(mask);
        Ok(self)
    }

    /// Frame `t`'s sprite mask as [64, 64], when the file has one.
    pub fn sprite_mask(&self, t: usize) -> Option<ArrayView2<'_, u8>> {
        let mask = self.sprite_mask.as_ref()?;
        (t < self.len()).then(|| mask.index_axis(Axis(0), t))
    }

    /// Number of steps T (frames, actions, rewards and dones each).
    pub fn len(&self) -> usize {
        self.obs.len_of(Axis(0))
    }

    /// Always false: a valid rollout has at least one step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per action (A).
    pub fn action_dim(&self) -> usize {
        self.actions.ncols()
    }

    /// [T, 64, 64, 3] RGB frames; `obs[t]` is seen before `actions[t]`.
    pub fn obs(&self) -> &Array4<u8> {
        &self.obs
    }

    /// Frame `t` as [64, 64, 3], or `None` past the end.
    pub fn frame(&self, t: usize) -> Option<ArrayView3<'_, u8>> {
        (t < self.len()).then(|| self.obs.index_axis(Axis(0), t))
    }

    /// [T, A] actions.
    pub fn actions(&self) -> &Array2<f32> {
        &self.actions
    }

    /// [T] rewards; `rewards[t]` follows `actions[t]`.
    pub fn rewards(&self) -> &Array1<f32> {
        &self.rewards
    }

    /// [T] 0/1; `dones[t]` = the env terminated after `actions[t]`.
    pub fn dones(&self) -> &Array1<u8> {
        &self.dones
    }

    /// The seed the env was reset with, when the writer recorded it.
    pub fn env_seed(&self) -> Option<u64> {
        self.env_seed
    }

    /// Sum of the rewards, in f64 to keep long episodes exact.
    pub fn total_reward(&self) -> f64 {
        self.rewards.iter().map(|&r| f64::from(r)).sum()
    }

    /// Writes the rollout atomically: `path` + ".tmp" is written, fsynced and renamed to `path`. On error
    /// the temporary file is removed and `path` is left as it was. Returns the file's size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64, RolloutError> {
        let temp = temp_path(path);
        let result = self.write_file(&temp).and_then(|bytes| {
            std::fs::rename(&temp, path).map_err(|source| RolloutError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            sync_parent_dir(path);
            Ok(bytes)
        });
        if result.is_err() {
            // Best effort: the temp file is garbage now; a failure to remove it changes nothing for the caller.
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn write_file(&self, temp: &Path) -> Result<u64, RolloutError> {
        let write_error = |source: io::Error| RolloutError::Write {
            path: temp.to_path_buf(),
            source,
        };
        let encode_error = |source: WriteNpzError| RolloutError::Encode {
            path: temp.to_path_buf(),
            source,
        };
        let file = File::create(temp).map_err(write_error)?;
        let mut npz = NpzWriter::new_compressed(BufWriter::new(file));
        npz.add_array(OBS, &self.obs).map_err(encode_error)?;
        npz.add_array(ACTIONS, &self.actions)
            .map_err(encode_error)?;
        npz.add_array(REWARDS, &self.rewards)
            .map_err(encode_error)?;
        npz.add_array(DONES, &self.dones).map_err(encode_error)?;
        if let Some(seed) = self.env_seed {
            npz.add_array(ENV_SEED, &Array0::from_elem((), seed))
                .map_err(encode_error)?;
        }
        if let Some(mask) = &self.sprite_mask {
            npz.add_array(SPRITE_MASK, mask).map_err(encode_error)?;
        }
        let mut writer = npz.finish().map_err(encode_error)?;
        writer.flush().map_err(write_error)?;
        let file = writer
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        file.sync_all().map_err(write_error)?;
        Ok(file.metadata().map_err(write_error)?.len())
    }

    /// Reads and fully validates one rollout file (frames included).
    pub fn read(path: &Path) -> Result<Self, RolloutError> {
        let mut npz = open_npz(path)?;
        let names = array_names(path, &mut npz)?;
        let obs: Array4<u8> = read_array(path, &mut npz, &names, OBS, "uint8 [T, 64, 64, 3]")?;
        let actions: Array2<f32> = read_array(path, &mut npz, &names, ACTIONS, "float32 [T, A]")?;
        let rewards: Array1<f32> = read_array(path, &mut npz, &names, REWARDS, "float32 [T]")?;
        let dones: Array1<u8> = read_array(path, &mut npz, &names, DONES, "uint8 [T]")?;
        let env_seed = read_env_seed(path, &mut npz, &names)?;
        let sprite_mask: Option<Array3<u8>> = if names.iter().any(|n| n == SPRITE_MASK) {
            Some(read_array(
                path,
                &mut npz,
                &names,
                SPRITE_MASK,
                "uint8 [T, 64, 64]",
            )?)
        } else {
            None
        };
        let invalid = |source| RolloutError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        let rollout = Rollout::new(obs, actions, rewards, dones, env_seed).map_err(invalid)?;
        match sprite_mask {
            Some(mask) => rollout.with_sprite_mask(mask).map_err(invalid),
            None => Ok(rollout),
        }
    }
}

/// A rollout's length and summary, read without decompressing its frames.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutInfo {
    pub path: PathBuf,
    /// Steps T.
    pub len: usize,
    /// Values per action (A).
    pub action_dim: usize,
    /// Sum of the rewards.
    pub total_reward: f64,
    /// Whether the env terminated at some step (death, lap done, off the playfield).
    pub terminated: bool,
    pub env_seed: Option<u64>,
    /// Whether the file has a `sprite_mask` array.
    pub has_sprite_mask: bool,
    /// Size of the file in bytes.
    pub bytes: u64,
}

impl RolloutInfo {
    /// Reads the small arrays and checks them against each other; the frames are only checked to be
    /// present (their shape and contents are checked by [`Rollout::read`]). A truncated file fails here,
    /// since the zip directory sits at its end.
    pub fn read(path: &Path) -> Result<Self, RolloutError> {
        let invalid = |source| RolloutError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::metadata(path)
            .map_err(|source| RolloutError::Open {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut npz = open_npz(path)?;
        let names = array_names(path, &mut npz)?;
        if !names.iter().any(|n| n == OBS) {
            return Err(RolloutError::MissingArray {
                path: path.to_path_buf(),
                name: OBS,
                found: names.join(", "),
            });
        }
        let actions: Array2<f32> = read_array(path, &mut npz, &names, ACTIONS, "float32 [T, A]")?;
        let rewards: Array1<f32> = read_array(path, &mut npz, &names, REWARDS, "float32 [T]")?;
        let dones: Array1<u8> = read_array(path, &mut npz, &names, DONES, "uint8 [T]")?;
        let env_seed = read_env_seed(path, &mut npz, &names)?;
        let steps = actions.nrows();
        if steps == 0 {
            return Err(invalid(FormatError::Empty));
        }
        if actions.ncols() == 0 {
            return Err(invalid(FormatError::NoActionValues {
                shape: actions.shape().to_vec(),
            }));
        }
        check_small_arrays(steps, &actions, &rewards, &dones).map_err(invalid)?;
        Ok(RolloutInfo {
            path: path.to_path_buf(),
            len: steps,
            action_dim: actions.ncols(),
            total_reward: rewards.iter().map(|&r| f64::from(r)).sum(),
            terminated: dones.iter().any(|&d| d == 1),
            env_seed,
            has_sprite_mask: names.iter().any(|n| n == SPRITE_MASK),
            bytes,
        })
    }
}

/// The rollouts in a folder: the valid ones, sorted by file name, and the errors of the others.
#[derive(Debug, Default)]
pub struct RolloutListing {
    pub valid: Vec<RolloutInfo>,
    /// One error per `.npz` that failed [`RolloutInfo::read`]; the listing goes on past them.
    pub corrupt: Vec<RolloutError>,
}

impl RolloutListing {
    /// Total steps over the valid rollouts.
    pub fn frames(&self) -> usize {
        self.valid.iter().map(|info| info.len).sum()
    }
}

/// Lists the `*.npz` rollouts directly in `dir` (not in subfolders; `*.npz.tmp` leftovers are ignored),
/// checking each cheaply with [`RolloutInfo::read`]. A corrupt file is reported in
/// [`RolloutListing::corrupt`], not an error; only an unreadable folder is.
pub fn list_rollouts(dir: &Path) -> io::Result<RolloutListing> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == ROLLOUT_EXTENSION) {
            paths.push(path);
        }
    }
    paths.sort();
    let mut listing = RolloutListing::default();
    for path in paths {
        match RolloutInfo::read(&path) {
            Ok(info) => listing.valid.push(info),
            Err(err) => listing.corrupt.push(err),
        }
    }
    Ok(listing)
}

/// Collects one episode step by step, then checks it into a [`Rollout`].
#[derive(Debug, Clone)]
pub struct RolloutRecorder {
    obs: Vec<u8>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<u8>,
    /// One 64x64 mask per step, while every step has come with one.
    sprite_mask: Option<Vec<u8>>,
    action_dim: usize,
    env_seed: Option<u64>,
}

impl RolloutRecorder {
    /// `capacity_steps` reserves memory for that many steps up front.
    pub fn new(action_dim: usize, env_seed: Option<u64>, capacity_steps: usize) -> Self {
        RolloutRecorder {
            obs: Vec::with_capacity(capacity_steps * FRAME_BYTES),
            actions: Vec::with_capacity(capacity_steps * action_dim),
            rewards: Vec::with_capacity(capacity_steps),
            dones: Vec::with_capacity(capacity_steps),
            sprite_mask: Some(Vec::new()),
            action_dim,
            env_seed,
        }
    }

    /// Records one step: the observation seen, its sprite mask if the env has one, the action taken
    /// on it, and what the action led to. The file gets a mask only if every step had one.
    pub fn push(
        &mut self,
        obs: &Frame,
        sprite_mask: Option<&[u8]>,
        action: &[f32],
        reward: f32,
        terminated: bool,
    ) -> Result<(), FormatError> {
        if obs.dimensions() != (OBS_SIZE, OBS_SIZE) {
            let (width, height) = obs.dimensions();
            return Err(FormatError::FrameShape {
                shape: vec![self.len(), height as usize, width as usize, 3],
            });
        }
        if action.len() != self.action_dim {
            return Err(FormatError::LengthMismatch {
                array: "action",
                len: action.len(),
                expected: self.action_dim,
            });
        }
        match (sprite_mask, &mut self.sprite_mask) {
            (Some(mask), Some(masks)) if mask.len() == FRAME_SIDE * FRAME_SIDE => {
                masks.extend_from_slice(mask)
            }
            (Some(mask), Some(_)) => {
                return Err(FormatError::MaskShape {
                    shape: vec![mask.len()],
                    steps: self.len(),
                });
            }
            _ => self.sprite_mask = None,
        }
        self.obs.extend_from_slice(obs.as_raw());
        self.actions.extend_from_slice(action);
        self.rewards.push(reward);
        self.dones.push(u8::from(terminated));
        Ok(())
    }

    /// Steps recorded so far.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    pub fn finish(self) -> Result<Rollout, FormatError> {
        let steps = self.rewards.len();
        let frame_shape_error = || FormatError::FrameShape {
            shape: vec![steps, FRAME_SIDE, FRAME_SIDE, FRAME_CHANNELS],
        };
        let obs = Array4::from_shape_vec((steps, FRAME_SIDE, FRAME_SIDE, FRAME_CHANNELS), self.obs)
            .map_err(|_| frame_shape_error())?;
        let actions =
            Array2::from_shape_vec((steps, self.action_dim), self.actions).map_err(|_| {
                FormatError::NoActionValues {
                    shape: vec![steps, self.action_dim],
                }
            })?;
        let rollout = Rollout::new(
            obs,
            actions,
            Array1::from(self.rewards),
            Array1::from(self.dones),
            self.env_seed,
        )?;
        match self.sprite_mask {
            Some(masks) => {
                let masks = Array3::from_shape_vec((steps, FRAME_SIDE, FRAME_SIDE), masks)
                    .map_err(|_| FormatError::MaskShape {
                        shape: vec![steps],
                        steps,
                    })?;
                rollout.with_sprite_mask(masks)
            }
            None => Ok(rollout),
        }
    }
}

/// `path` with [`TEMP_SUFFIX`] appended: `rollout_00001.npz` -> `rollout_00001.npz.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

fn check_small_arrays(
    steps: usize,
    actions: &Array2<f32>,
    rewards: &Array1<f32>,
    dones: &Array1<u8>,
) -> Result<(), FormatError> {
    for (array, len) in [
        (ACTIONS, actions.nrows()),
        (REWARDS, rewards.len()),
        (DONES, dones.len()),
    ] {
        if len != steps {
            return Err(FormatError::LengthMismatch {
                array,
                len,
                expected: steps,
            });
        }
    }
    if let Some((index, &value)) = actions.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(FormatError::NotFinite {
            array: ACTIONS,
            index,
            value,
        });
    }
    if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(FormatError::NotFinite {
            array: REWARDS,
            index,
            value,
        });
    }
    if let Some((index, &value)) = dones.iter().enumerate().find(|(_, v)| **v > 1) {
        return Err(FormatError::BadDone { index, value });
    }
    Ok(())
}

pub(crate) fn open_npz(path: &Path) -> Result<NpzReader<BufReader<File>>, RolloutError> {
    let file = File::open(path).map_err(|source| RolloutError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    NpzReader::new(BufReader::new(file)).map_err(|source| RolloutError::Archive {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn array_names(
    path: &Path,
    npz: &mut NpzReader<BufReader<File>>,
) -> Result<Vec<String>, RolloutError> {
    npz.names().map_err(|source| RolloutError::Archive {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_array<E, D>(
    path: &Path,
    npz: &mut NpzReader<BufReader<File>>,
    names: &[String],
    name: &'static str,
    expected: &'static str,
) -> Result<ndarray::Array<E, D>, RolloutError>
where
    E: ndarray_npy::ReadableElement,
    D: ndarray::Dimension,
{
    if !names.iter().any(|n| n == name) {
        return Err(RolloutError::MissingArray {
            path: path.to_path_buf(),
            name,
            found: names.join(", "),
        });
    }
    npz.by_name(name).map_err(|source| RolloutError::BadArray {
        path: path.to_path_buf(),
        name,
        expected,
        source,
    })
}

fn read_env_seed(
    path: &Path,
    npz: &mut NpzReader<BufReader<File>>,
    names: &[String],
) -> Result<Option<u64>, RolloutError> {
    if !names.iter().any(|n| n == ENV_SEED) {
        return Ok(None);
    }
    let seed: Array0<u64> = read_array(path, npz, names, ENV_SEED, "uint64 scalar")?;
    Ok(Some(seed.into_scalar()))
}

/// Makes a rename durable by syncing the folder that holds it. Best effort: some platforms and file
/// systems cannot open or sync a directory, and the file's own data is already synced.
pub(crate) fn sync_parent_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(handle) = File::open(dir)
    {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_rollout(steps: usize) -> Rollout {
        let mut recorder = RolloutRecorder::new(2, Some(42), steps);
        for t in 0..steps {
            let frame = Frame::from_fn(OBS_SIZE, OBS_SIZE, |x, y| {
                image::Rgb([x as u8, y as u8, t as u8])
            });
            recorder
                .push(
                    &frame,
                    None,
                    &[t as f32, -1.0],
                    0.5 * t as f32,
                    t + 1 == steps,
                )
                .expect("valid step");
        }
        recorder.finish().expect("valid rollout")
    }

    /// A fresh scratch folder per test, removed when the returned guard drops (even on a failure).
    fn scratch_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("dreamplay-rollout-{name}-"))
            .tempdir()
            .expect("scratch folder")
    }

    #[test]
    fn write_then_read_round_trips_and_leaves_no_temp_file() {
        let dir_guard = scratch_dir("round-trip");
        let dir = dir_guard.path().to_path_buf();
        let path = dir.join("a.npz");
        let rollout = tiny_rollout(5);
        let bytes = rollout.write(&path).expect("writable");
        assert_eq!(bytes, std::fs::metadata(&path).expect("written").len());
        assert!(!temp_path(&path).exists());
        let back = Rollout::read(&path).expect("readable");
        assert_eq!(back, rollout);
        assert_eq!(back.frame(2).map(|f| f[[3, 7, 2]]), Some(2));
        assert_eq!(back.frame(5), None);
        let info = RolloutInfo::read(&path).expect("readable");
        assert_eq!(
            (info.len, info.action_dim, info.terminated, info.env_seed),
            (5, 2, true, Some(42))
        );
        assert_eq!(info.total_reward, 5.0);
    }

    #[test]
    fn sprite_masks_round_trip_and_are_kept_only_when_every_step_has_one() {
        let dir_guard = scratch_dir("masks");
        let dir = dir_guard.path().to_path_buf();
        let path = dir.join("m.npz");
        let frame = Frame::new(OBS_SIZE, OBS_SIZE);
        let record = |masks: &[Option<Vec<u8>>]| {
            let mut recorder = RolloutRecorder::new(1, None, masks.len());
            for mask in masks {
                recorder
                    .push(&frame, mask.as_deref(), &[0.0], 1.0, false)
                    .expect("valid step");
            }
            recorder.finish().expect("valid rollout")
        };
        let mask = |t: usize| {
            let mut m = vec![0u8; FRAME_SIDE * FRAME_SIDE];
            m[t * 65] = 1;
            Some(m)
        };
        let rollout = record(&[mask(0), mask(1), mask(2)]);
        rollout.write(&path).expect("writable");
        let back = Rollout::read(&path).expect("readable");
        assert_eq!(back, rollout);
        assert_eq!(
            back.sprite_mask(1).map(|m| (m[[1, 1]], m[[0, 0]])),
            Some((1, 0))
        );
        assert_eq!(back.sprite_mask(3), None);
        assert!(RolloutInfo::read(&path).expect("readable").has_sprite_mask);
        // A step without a mask drops the array: a partial mask would misalign.
        let rollout = record(&[mask(0), None, mask(2)]);
        rollout.write(&path).expect("writable");
        assert_eq!(Rollout::read(&path).expect("readable").sprite_mask(0), None);
        assert!(!RolloutInfo::read(&path).expect("readable").has_sprite_mask);
        // A mask of the wrong size is refused, and so is a [T, 64, 64] array of another T.
        let mut recorder = RolloutRecorder::new(1, None, 1);
        let err = recorder
            .push(&frame, Some(&[0u8; 10][..]), &[0.0], 1.0, false)
            .expect_err("a 10-byte mask");
        assert!(err.to_string().contains("sprite_mask"), "{err}");
        let err = tiny_rollout(2)
            .with_sprite_mask(Array3::zeros((3, 64, 64)))
            .expect_err("3 masks for 2 steps");
        assert!(err.to_string().contains("[3, 64, 64]"), "{err}");
    }

    #[test]
    fn inconsistent_arrays_are_rejected() {
        let frames = Array4::<u8>::zeros((3, 64, 64, 3));
        let ok = |n| Array1::<f32>::zeros(n);
        let actions = Array2::<f32>::zeros((3, 1));
        let dones = Array1::<u8>::zeros(3);
        assert!(matches!(
            Rollout::new(frames.clone(), actions.clone(), ok(2), dones.clone(), None),
            Err(FormatError::LengthMismatch {
                array: REWARDS,
                len: 2,
                expected: 3
            })
        ));
        assert!(matches!(
            Rollout::new(
                Array4::zeros((3, 32, 32, 3)),
                actions.clone(),
                ok(3),
                dones.clone(),
                None
            ),
            Err(FormatError::FrameShape { .. })
        ));
        assert!(matches!(
            Rollout::new(
                Array4::zeros((0, 64, 64, 3)),
                Array2::zeros((0, 1)),
                ok(0),
                Array1::zeros(0),
                None
            ),
            Err(FormatError::Empty)
        ));
        let mut nan_rewards = ok(3);
        nan_rewards[1] = f32::NAN;
        assert!(matches!(
            Rollout::new(frames.clone(), actions.clone(), nan_rewards, dones, None),
            Err(FormatError::NotFinite {
                array: REWARDS,
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            Rollout::new(frames, actions, ok(3), Array1::from(vec![0, 2, 0]), None),
            Err(FormatError::BadDone { index: 1, value: 2 })
        ));
    }

    #[test]
    fn missing_and_mistyped_arrays_name_the_file_and_the_array() {
        let dir_guard = scratch_dir("missing");
        let dir = dir_guard.path().to_path_buf();
        let path = dir.join("partial.npz");
        let file = File::create(&path).expect("writable");
        let mut npz = NpzWriter::new_compressed(file);
        npz.add_array(OBS, &Array4::<u8>::zeros((2, 64, 64, 3)))
            .expect("encodable");
        npz.add_array(ACTIONS, &Array2::<f64>::zeros((2, 1)))
            .expect("encodable");
        npz.finish().expect("writable");
        let err = Rollout::read(&path).expect_err("actions are f64");
        assert!(
            matches!(err, RolloutError::BadArray { name: ACTIONS, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("partial.npz"), "{err}");

        let file = File::create(&path).expect("writable");
        let mut npz = NpzWriter::new_compressed(file);
        npz.add_array(OBS, &Array4::<u8>::zeros((2, 64, 64, 3)))
            .expect("encodable");
        npz.finish().expect("writable");
        let err = RolloutInfo::read(&path).expect_err("no actions");
        assert!(
            matches!(err, RolloutError::MissingArray { name: ACTIONS, .. }),
            "{err}"
        );
    }

    #[test]
    fn listing_reports_corrupt_files_and_ignores_temp_files() {
        let dir_guard = scratch_dir("listing");
        let dir = dir_guard.path().to_path_buf();
        tiny_rollout(3).write(&dir.join("b.npz")).expect("writable");
        tiny_rollout(4).write(&dir.join("a.npz")).expect("writable");
        std::fs::write(dir.join("c.npz"), b"not a zip").expect("writable");
        std::fs::write(dir.join("d.npz.tmp"), b"half").expect("writable");
        let listing = list_rollouts(&dir).expect("readable folder");
        let names: Vec<_> = listing
            .valid
            .iter()
            .map(|i| i.path.file_name().map(|n| n.to_owned()))
            .collect();
        assert_eq!(names, [Some("a.npz".into()), Some("b.npz".into())]);
        assert_eq!(listing.frames(), 7);
        assert_eq!(listing.corrupt.len(), 1);
        assert!(listing.corrupt[0].path().ends_with("c.npz"));
    }
}
