//! C: the paper's linear controller, in plain Rust on `f32` slices.
//!
//! It is 867 (CarRacing) or 1,088 (Take Cover) weights: a dot product per output. Plain Rust
//! beats a tensor backend here by orders of magnitude (no dispatch, no device transfer), CMA-ES
//! reads and writes its parameters as one flat vector, and the dream already hands back z, h and c
//! on the host.

use serde::{Deserialize, Serialize};

use crate::envs::{EnvKind, car_racing, take_cover};

/// Which of the paper's two controller forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerKind {
    /// a = tanh(W [z, h] + b), 3 outputs: steer, gas, brake.
    CarRacing,
    /// a = tanh(W [z, c, h]), no bias, 1 output: move.
    TakeCover,
}

impl From<EnvKind> for ControllerKind {
    fn from(env: EnvKind) -> Self {
        match env {
            EnvKind::CarRacing => ControllerKind::CarRacing,
            EnvKind::TakeCover => ControllerKind::TakeCover,
        }
    }
}

/// The linear controller. Weights are row-major `[outputs, inputs]`, followed by the bias (if any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Controller {
    kind: ControllerKind,
    z_size: usize,
    hidden_size: usize,
    params: Vec<f32>,
}

impl Controller {
    /// A zero controller (all parameters 0).
    pub fn new(kind: ControllerKind, z_size: usize, hidden_size: usize) -> Self {
        let n = Self::param_count_for(kind, z_size, hidden_size);
        Self {
            kind,
            z_size,
            hidden_size,
            params: vec![0.0; n],
        }
    }

    pub fn param_count_for(kind: ControllerKind, z_size: usize, hidden_size: usize) -> usize {
        match kind {
            ControllerKind::CarRacing => 3 * (z_size + hidden_size) + 3,
            ControllerKind::TakeCover => z_size + 2 * hidden_size,
        }
    }

    pub fn kind(&self) -> ControllerKind {
        self.kind
    }
    pub fn z_size(&self) -> usize {
        self.z_size
    }
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Inputs per output: `[z, h]` or `[z, c, h]`.
    pub fn input_size(&self) -> usize {
        match self.kind {
            ControllerKind::CarRacing => self.z_size + self.hidden_size,
            ControllerKind::TakeCover => self.z_size + 2 * self.hidden_size,
        }
    }

    /// Outputs: 3 (steer, gas, brake) or 1 (move).
    pub fn output_size(&self) -> usize {
        match self.kind {
            ControllerKind::CarRacing => 3,
            ControllerKind::TakeCover => 1,
        }
    }

    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    /// The flat parameter vector (for CMA-ES).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Sets the flat parameter vector. Errors (changing nothing) on a wrong length.
    pub fn set_params(&mut self, params: &[f32]) -> Result<(), ControllerError> {
        if params.len() != self.params.len() {
            return Err(ControllerError::WrongLength {
                expected: self.params.len(),
                got: params.len(),
            });
        }
        self.params.copy_from_slice(params);
        Ok(())
    }

    /// The raw `tanh` outputs for one dream or env step.
    ///
    /// # Shapes
    /// - `z`: `[z_size]`, `cell`, `hidden`: `[hidden_size]` (`cell` is ignored by CarRacing's form)
    /// - returns `[output_size]`, each in [-1, 1]
    pub fn forward(&self, z: &[f32], cell: &[f32], hidden: &[f32]) -> Vec<f32> {
        assert_eq!(z.len(), self.z_size, "controller z size");
        assert_eq!(hidden.len(), self.hidden_size, "controller hidden size");
        let n_in = self.input_size();
        let n_out = self.output_size();
        let dot = |row: &[f32], parts: &[&[f32]]| -> f32 {
            let mut acc = 0.0f32;
            let mut offset = 0;
            for part in parts {
                acc += row[offset..offset + part.len()]
                    .iter()
                    .zip(part.iter())
                    .map(|(w, x)| w * x)
                    .sum::<f32>();
                offset += part.len();
            }
            acc
        };
        (0..n_out)
            .map(|o| {
                let row = &self.params[o * n_in..(o + 1) * n_in];
                let pre = match self.kind {
                    ControllerKind::CarRacing => {
                        dot(row, &[z, hidden]) + self.params[n_out * n_in + o]
                    }
                    ControllerKind::TakeCover => {
                        assert_eq!(cell.len(), self.hidden_size, "controller cell size");
                        dot(row, &[z, cell, hidden])
                    }
                };
                pre.tanh()
            })
            .collect()
    }

    /// The env action from the raw outputs, as the paper maps them: CarRacing
    /// `[steer = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1)]`; Take Cover `[move = a0]`
    /// read as the env reads it: -1, 0 or +1, split at +-1/3.
    ///
    /// Take Cover's move is snapped so that M, in the dream and in reality alike, is told the
    /// move the env makes. Fed the raw value, M had to guess where the env's thresholds lie, and
    /// C could live in the dream on values near them that the env treats as standing still.
    pub fn to_env_action(&self, raw: &[f32]) -> Vec<f32> {
        match self.kind {
            ControllerKind::CarRacing => car_racing::action_from_tanh(raw),
            ControllerKind::TakeCover => vec![take_cover::move_direction(raw[0])],
        }
    }

    /// `forward` then `to_env_action`.
    pub fn act(&self, z: &[f32], cell: &[f32], hidden: &[f32]) -> Vec<f32> {
        let raw = self.forward(z, cell, hidden);
        self.to_env_action(&raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    #[error("controller expects {expected} parameters, got {got}")]
    WrongLength { expected: usize, got: usize },
}
