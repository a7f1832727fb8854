//! The one seam between the playground and the world model: [`DreamRunner`], held by the
//! [`WorldModelRuntime`] resource. Everything else in the app talks to V, M and C through it, so the
//! app runs (reality only, with a clear note) when no model is there.

use std::path::{Path, PathBuf};

use bevy::prelude::*;

use crate::dream::DreamStep;
use crate::envs::{EnvKind, Frame};
use crate::model::atlas::{LatentMap, LatentStats};
use crate::model::bundle::{EvolvedDream, controller_name};
use crate::model::mdrnn::{DimMixture, DoneRule};

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<WorldModelRuntime>();
}

/// Whose state C reads when it drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The dream's z and M's memory of it.
    Dream,
    /// V's encoding of the real frame and the memory of an M that follows reality, as in `eval`.
    Reality,
    /// V's encoding of the flow dream's frame and the memory of an M that follows the flow dream:
    /// C, evolved in M's dream, acting in another model's dream.
    FlowDream,
}

/// Which world model dreams: the 2018 one (V and M) or the flow-matching one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DreamFamily {
    /// Ha & Schmidhuber's V and M: a 1-D latent and an MDN-RNN.
    #[default]
    #[value(name = "2018", alias = "mdn-rnn")]
    #[serde(rename = "2018", alias = "mdn-rnn")]
    MdnRnn,
    /// A spatial latent and a UNet sampled by flow matching in a few steps.
    Flow,
}

impl DreamFamily {
    pub fn label(self) -> &'static str {
        match self {
            DreamFamily::MdnRnn => "2018 (V+M)",
            DreamFamily::Flow => "Flow",
        }
    }

    pub fn other(self) -> Self {
        match self {
            DreamFamily::MdnRnn => DreamFamily::Flow,
            DreamFamily::Flow => DreamFamily::MdnRnn,
        }
    }
}

/// The flow dream's own knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowKnobs {
    /// Euler steps from noise to the next latent: 1, 2, 4 or 8.
    pub steps: usize,
    /// The starting noise's scale: the flow dream's analogue of tau.
    pub temperature: f32,
}

impl Default for FlowKnobs {
    fn default() -> Self {
        let sampling = crate::dream::flow::DEFAULT_SAMPLING;
        Self {
            steps: sampling.steps,
            temperature: sampling.temperature,
        }
    }
}

/// Whether the flow model is there, and why not, said so that a user can fix it.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowStatus {
    Ready,
    /// No flow model beside the bundle.
    Missing {
        path: PathBuf,
        env: EnvKind,
    },
    /// The file is there but unusable.
    Unavailable {
        reason: String,
    },
}

impl FlowStatus {
    pub fn is_ready(&self) -> bool {
        *self == FlowStatus::Ready
    }

    /// What is missing and the commands that make it; empty when ready.
    pub fn explanation(&self) -> String {
        match self {
            FlowStatus::Ready => String::new(),
            FlowStatus::Missing { path, env } => format!(
                "No flow model: expected {}.\nTrain one with:\n{}",
                path.display(),
                crate::train::flow_pipeline_commands(*env)
                    .iter()
                    .map(|command| format!("  {command}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            FlowStatus::Unavailable { reason } => reason.clone(),
        }
    }
}

/// One of the bundle's Cs, as the app offers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerChoice {
    /// Its name in the bundle, e.g. "C, evolved at tau 0.1".
    pub name: String,
    /// The dream it was evolved in, if the bundle records one.
    pub dream: Option<EvolvedDream>,
}

/// A world model the app can drive: V to see, M to dream, C to act. One dream at a time, plus an
/// M that follows reality so that C can drive the real env while the dream runs on its own.
///
/// "The dream's state" is z plus M's recurrent state (h, c).
pub trait DreamRunner: Send + Sync {
    /// One line for the UI, e.g. `flex (CPU, 2 threads)`.
    fn describe_backend(&self) -> String;
    /// Latent size (32 for CarRacing, 64 for Take Cover).
    fn z_size(&self) -> usize;
    /// Per-dimension statistics of the data's z, if the bundle ships them.
    fn latent_stats(&self) -> Option<&LatentStats> {
        None
    }
    /// The 2D map of the data's z, if the bundle ships it.
    fn latent_map(&self) -> Option<&LatentMap> {
        None
    }
    /// C exists in the bundle and can drive.
    fn has_controller(&self) -> bool;
    /// The dream the selected C was evolved in, if the bundle records one: the app starts with
    /// its tau and done odds, so that C meets the dream it was trained for.
    fn evolved_dream(&self) -> Option<EvolvedDream> {
        None
    }
    /// Every C the bundle holds, index 0 the default C (the one selected at the start); empty
    /// without a C.
    fn controllers(&self) -> Vec<ControllerChoice> {
        if !self.has_controller() {
            return Vec::new();
        }
        let dream = self.evolved_dream();
        vec![ControllerChoice {
            name: controller_name(dream.as_ref()),
            dream,
        }]
    }
    /// Which of [`controllers`](DreamRunner::controllers) drives from now on (and whose dream
    /// [`evolved_dream`](DreamRunner::evolved_dream) reports); an error names the choices.
    fn select_controller(&mut self, index: usize) -> anyhow::Result<()> {
        let count = self.controllers().len();
        anyhow::ensure!(
            index < count,
            "there is no C number {index}: this model holds {count}"
        );
        Ok(())
    }
    /// The index of the C that drives, in [`controllers`](DreamRunner::controllers).
    fn selected_controller(&self) -> usize {
        0
    }
    /// Multiplies the odds of M's done head by `factor` from the next step on (1: as trained).
    fn set_done_odds(&mut self, factor: f32);
    /// How M's done head ends the dream from the next step on: drawn, or the paper's threshold.
    fn set_done_rule(&mut self, rule: DoneRule);

    /// V's encoding (mu) of a 64x64 frame.
    fn encode(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>>;
    /// V's decoding of a latent to a 64x64 frame.
    fn decode(&mut self, z: &[f32]) -> anyhow::Result<Frame>;
    /// decode(encode(frame)): what V keeps of a frame.
    fn reconstruct(&mut self, frame: &Frame) -> anyhow::Result<Frame> {
        let z = self.encode(frame)?;
        self.decode(&z)
    }

    /// Forks the dream from a real frame: z = V's encoding, M's state zeroed.
    fn reset_from_frame(&mut self, frame: &Frame) -> anyhow::Result<()>;
    /// "Dream from here": forks the dream from the real frame the reality-following M has just
    /// observed, keeping the memory M built along the episode (what a dream forked after K real
    /// steps starts with in `train-controller`). Without such a memory, [`reset_from_frame`].
    ///
    /// [`reset_from_frame`]: DreamRunner::reset_from_frame
    fn fork_from_reality(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.reset_from_frame(frame)
    }
    /// Back to where the last [`fork_from_reality`](DreamRunner::fork_from_reality) started, whose
    /// frame was `frame` (a dream that M ended restarts there).
    fn restart_from_fork(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.reset_from_frame(frame)
    }
    /// Starts the dream from z ~ N(0, I), M's state zeroed.
    fn reset_random(&mut self) -> anyhow::Result<()>;
    /// Replaces z and keeps M's state (h, c): the latent explorer's sliders, and keeping M in step
    /// with reality while reality drives.
    fn set_z(&mut self, z: &[f32]) -> anyhow::Result<()>;
    /// One M step at temperature `tau`: samples the next z.
    fn step(&mut self, action: &[f32], tau: f32) -> anyhow::Result<DreamStep>;
    /// The dream's current z decoded by V.
    fn frame(&mut self) -> anyhow::Result<Frame>;
    /// The dream's current z.
    fn z(&self) -> Vec<f32>;
    /// The reality-following M sees a real frame: its z becomes V's encoding, returned.
    fn observe_reality(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>>;
    /// The reality-following M's memory moves on by the action reality was given.
    fn advance_reality(&mut self, action: &[f32]) -> anyhow::Result<()>;
    /// Forgets the reality-following memory: a new real episode.
    fn reset_reality(&mut self);
    /// Restarts the dream's random draws (and the futures') from `seed`: a tour scene shows the
    /// same dream each time it is entered.
    fn reseed(&mut self, _seed: u64) {}
    /// C's action ([z, h] or [z, c, h]) from the dream's state or from reality's; `None` without
    /// a controller.
    fn controller_action(&self, view: View) -> Option<Vec<f32>>;

    /// V's encoding of the latest real frame the reality-following M saw; `None` before one.
    fn reality_z(&self) -> Option<Vec<f32>> {
        None
    }
    /// M's predicted mixture for dimension `dim` of the dream's current z, from the step that drew
    /// it; `None` before a step or after an edit.
    fn mixture(&self, _dim: usize) -> Option<DimMixture> {
        None
    }
    /// Forks `n` futures of `family`'s dream, all from one state: the dream's or reality's. The
    /// 2018 model's start at the same z, h and c; the flow model's at the same context latents
    /// (the flow dream's, or the last real frames').
    fn fork_futures(&mut self, _n: usize, _from: View, _family: DreamFamily) -> anyhow::Result<()> {
        anyhow::bail!("this world model cannot fork futures")
    }
    /// Steps every future with the same action: the 2018 model's at temperature `tau`, the flow
    /// model's at its own sampling (the flow knobs).
    fn step_futures(&mut self, _action: &[f32], _tau: f32) -> anyhow::Result<()> {
        anyhow::bail!("this world model cannot step futures")
    }
    /// The futures' frames, decoded as one batch (none before a fork).
    fn futures_frames(&mut self) -> anyhow::Result<Vec<Frame>> {
        Ok(Vec::new())
    }
    /// Each future's z (none before a fork).
    fn futures_z(&self) -> Vec<Vec<f32>> {
        Vec::new()
    }
    /// For each action, held from `from`'s state: the dream's frame one step on and `steps` steps
    /// on. Neither the dream nor reality moves.
    fn preview_actions(
        &mut self,
        _from: View,
        _actions: &[Vec<f32>],
        _steps: usize,
        _tau: f32,
    ) -> anyhow::Result<Vec<[Frame; 2]>> {
        anyhow::bail!("this world model cannot preview actions")
    }

    /// Whether a flow model came with the bundle, and why not.
    fn flow_status(&self) -> FlowStatus {
        FlowStatus::Unavailable {
            reason: "this world model has no flow dream".to_string(),
        }
    }
    /// Forks the flow dream from the last real frames the reality-following M saw (up to the
    /// flow model's context) and the actions between them.
    fn flow_fork_from_reality(&mut self) -> anyhow::Result<()> {
        anyhow::bail!("{}", self.flow_status().explanation())
    }
    /// Back to where the last flow fork started.
    fn flow_restart_from_fork(&mut self) -> anyhow::Result<()> {
        anyhow::bail!("{}", self.flow_status().explanation())
    }
    /// One flow-dream step: samples the next latent with the knobs' steps and temperature.
    fn flow_step(&mut self, _action: &[f32]) -> anyhow::Result<DreamStep> {
        anyhow::bail!("{}", self.flow_status().explanation())
    }
    /// The flow dream's current frame, as its autoencoder draws it.
    fn flow_frame(&mut self) -> anyhow::Result<Frame> {
        anyhow::bail!("{}", self.flow_status().explanation())
    }
    /// V's encoding of the flow dream's current frame (what C reads there); `None` without one.
    fn flow_encoding(&self) -> Option<Vec<f32>> {
        None
    }
    /// Sets the flow dream's sampling steps and temperature from the next step on.
    fn set_flow_knobs(&mut self, _knobs: FlowKnobs) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Why there is no runner, said so that a user can fix it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    /// Loaded and ready.
    Ready { backend: String, controller: bool },
    /// Nothing at the expected path.
    Missing { path: PathBuf, env: EnvKind },
    /// The file is there but unusable, or this build has no world model code yet.
    Unavailable { reason: String },
}

impl ModelStatus {
    /// A short headline for the dream and V panes.
    pub fn headline(&self) -> String {
        match self {
            ModelStatus::Ready { backend, .. } => format!("world model on {backend}"),
            ModelStatus::Missing { .. } => "No world model yet".to_string(),
            ModelStatus::Unavailable { .. } => "World model unavailable".to_string(),
        }
    }

    /// The full explanation: what is missing and the command that makes it.
    pub fn explanation(&self) -> String {
        match self {
            ModelStatus::Ready {
                controller: false, ..
            } => "The model has no controller (C) yet: you drive.".to_string(),
            ModelStatus::Ready { .. } => String::new(),
            ModelStatus::Missing { path, env } => format!(
                "Expected {}.\nMake it with:\n{}",
                path.display(),
                training_commands(*env)
            ),
            ModelStatus::Unavailable { reason } => reason.clone(),
        }
    }
}

/// The commands that train a world model for `env`, as the README lists them.
pub fn training_commands(env: EnvKind) -> String {
    crate::train::pipeline_commands(env)
        .iter()
        .map(|command| format!("  {command}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The world model for the current env, if one loaded, and why not otherwise.
#[derive(Resource)]
pub struct WorldModelRuntime {
    pub runner: Option<Box<dyn DreamRunner>>,
    pub status: ModelStatus,
}

impl Default for WorldModelRuntime {
    fn default() -> Self {
        Self {
            runner: None,
            status: ModelStatus::Unavailable {
                reason: "no world model loaded".to_string(),
            },
        }
    }
}

impl WorldModelRuntime {
    /// A runtime around an already-built runner (tests, and the loader below).
    pub fn ready(runner: Box<dyn DreamRunner>) -> Self {
        let status = ModelStatus::Ready {
            backend: runner.describe_backend(),
            controller: runner.has_controller(),
        };
        Self {
            runner: Some(runner),
            status,
        }
    }

    pub fn controller_available(&self) -> bool {
        self.runner
            .as_ref()
            .is_some_and(|runner| runner.has_controller())
    }
}

/// Where a world model for `env` lives under `models_dir` (the bundle's own convention).
pub fn model_path(models_dir: &Path, env: EnvKind) -> PathBuf {
    crate::model::bundle::default_path(models_dir, env)
}

/// Loads the world model for `env` from `models_dir`, or says why not. Never panics.
pub fn load_runtime(
    models_dir: &Path,
    env: EnvKind,
    backend_flag: Option<&str>,
) -> WorldModelRuntime {
    let path = model_path(models_dir, env);
    if !path.exists() {
        return WorldModelRuntime {
            runner: None,
            status: ModelStatus::Missing { path, env },
        };
    }
    super::burn_runner::load_burn_runtime(&path, env, backend_flag)
}
