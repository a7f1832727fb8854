//! C's memory of reality: V encodes each real frame (z = mu, no sampling) and M's LSTM steps along
//! on `[z_t, a_t]`, for a batch of real episodes at once. This is what C acts on in the real env,
//! in `eval`, in `train-controller`'s real fitness and in the app, and what a dream forked from
//! reality starts with.
//!
//! The memory holds only the state, on the host; V and M are lent to each call, so that the app
//! can use the dream's own V and M and `eval` its borrowed ones.

use burn::prelude::*;
use burn::tensor::TensorData;

use super::{DreamError, check_actions, read_f32};
use crate::agent::Latent;
use crate::envs::Frame;
use crate::model::mdrnn::{MdnRnn, MdnRnnState};
use crate::model::vae::{ConvVae, frames_to_tensor};

/// One row per real episode: V's latest z and M's h and c.
#[derive(Debug, Clone)]
pub struct RealityMemory {
    z_size: usize,
    hidden_size: usize,
    rows: usize,
    /// `[rows, z_size]`: V's encoding of each row's latest frame.
    z: Vec<f32>,
    /// `[rows, hidden]` each.
    hidden: Vec<f32>,
    cell: Vec<f32>,
}

impl RealityMemory {
    /// `rows` episodes at their start: z = 0, h = c = 0.
    pub fn new(z_size: usize, hidden_size: usize, rows: usize) -> Self {
        Self {
            z_size,
            hidden_size,
            rows,
            z: vec![0.0; rows * z_size],
            hidden: vec![0.0; rows * hidden_size],
            cell: vec![0.0; rows * hidden_size],
        }
    }

    /// A memory shaped for M.
    pub fn for_model<B: Backend>(rnn: &MdnRnn<B>, rows: usize) -> Self {
        Self::new(rnn.z_size(), rnn.hidden_size(), rows)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `i`'s z, `[z_size]`.
    pub fn z(&self, i: usize) -> &[f32] {
        &self.z[i * self.z_size..(i + 1) * self.z_size]
    }

    /// Row `i`'s state, as an agent sees it.
    pub fn latent(&self, i: usize) -> Latent<'_> {
        let hs = self.hidden_size;
        Latent {
            z: self.z(i),
            hidden: &self.hidden[i * hs..(i + 1) * hs],
            cell: &self.cell[i * hs..(i + 1) * hs],
        }
    }

    /// V sees each row's real frame, all in one batch: z = mu.
    pub fn observe<B: Backend>(
        &mut self,
        vae: &ConvVae<B>,
        frames: &[&Frame],
        device: &B::Device,
    ) -> Result<(), DreamError> {
        if frames.len() != self.rows {
            return Err(DreamError::FrameCount {
                frames: frames.len(),
                indices: self.rows,
            });
        }
        if vae.z_size() != self.z_size {
            return Err(DreamError::WrongZLength {
                expected: self.z_size,
                got: vae.z_size(),
            });
        }
        if self.rows > 0 {
            let (mu, _) = vae.encode(frames_to_tensor::<B>(frames, device));
            self.z = read_f32(mu);
        }
        Ok(())
    }

    /// Sets every row's z to latents already encoded (`[rows, z_size]`), e.g. a rollout's.
    pub fn set_all_z(&mut self, z: Vec<f32>) -> Result<(), DreamError> {
        if z.len() != self.rows * self.z_size {
            return Err(DreamError::WrongZLength {
                expected: self.rows * self.z_size,
                got: z.len(),
            });
        }
        self.z = z;
        Ok(())
    }

    /// Keeps rows `keep` (ascending), in that order: episodes that ended leave the batch.
    pub fn retain(&mut self, keep: &[usize]) {
        if keep.len() == self.rows {
            return; // every row goes on
        }
        let take = |values: &[f32], width: usize| -> Vec<f32> {
            keep.iter()
                .flat_map(|&k| &values[k * width..(k + 1) * width])
                .copied()
                .collect()
        };
        self.z = take(&self.z, self.z_size);
        self.hidden = take(&self.hidden, self.hidden_size);
        self.cell = take(&self.cell, self.hidden_size);
        self.rows = keep.len();
    }

    /// M's LSTM steps every row on `[z, a]` (`actions`: `[rows, action_size]`), in one batch.
    pub fn advance<B: Backend>(
        &mut self,
        rnn: &MdnRnn<B>,
        actions: &[f32],
        device: &B::Device,
    ) -> Result<(), DreamError> {
        let (n, zs, hs, a) = (self.rows, self.z_size, self.hidden_size, rnn.action_size());
        check_actions(actions, n, a)?;
        if rnn.hidden_size() != hs {
            return Err(DreamError::WrongMemoryLength {
                expected: hs,
                got: rnn.hidden_size(),
            });
        }
        if n == 0 {
            return Ok(());
        }
        let state = MdnRnnState {
            hidden: Tensor::from_data(TensorData::new(self.hidden.clone(), [n, hs]), device),
            cell: Tensor::from_data(TensorData::new(self.cell.clone(), [n, hs]), device),
        };
        let state = rnn.lstm_step(
            Tensor::from_data(TensorData::new(self.z.clone(), [n, zs]), device),
            Tensor::from_data(TensorData::new(actions.to_vec(), [n, a]), device),
            state,
        );
        // One read-back: [n, 2 * hs] = [h | c].
        let hc = read_f32(Tensor::cat(vec![state.hidden, state.cell], 1));
        for (row, values) in hc.chunks(2 * hs).enumerate() {
            self.hidden[row * hs..(row + 1) * hs].copy_from_slice(&values[..hs]);
            self.cell[row * hs..(row + 1) * hs].copy_from_slice(&values[hs..]);
        }
        Ok(())
    }

    /// Forgets every row's memory (h = c = 0), as at a new episode.
    pub fn forget(&mut self) {
        self.hidden.fill(0.0);
        self.cell.fill(0.0);
    }
}
