//! The state of play: which env, who drives, how hot the dream runs. The mode is `State<Mode>`
//! and pause is `State<SimState>`.

use std::path::PathBuf;

use bevy::prelude::*;

use super::super::commands::Mode;
use super::super::drive::{Driver, clamp_done_odds, clamp_tau, default_tau, idle_action};
use super::super::world_model::{DreamFamily, FlowKnobs, WorldModelRuntime};
use crate::agent::human::{HumanAxes, axes_from_action};
use crate::envs::EnvKind;
use crate::model::bundle::EvolvedDream;
use crate::model::mdrnn::DoneRule;

/// Where models come from, kept so that switching env can load the other env's model.
#[derive(Resource, Debug, Clone)]
pub struct ModelSource {
    pub models_dir: PathBuf,
    /// `--backend` as given (`auto`, `wgpu`, `flex`), or none.
    pub backend: Option<String>,
}

/// The state of play: which env, who drives, how hot the dream runs.
#[derive(Resource, Debug, Clone)]
pub struct Session {
    pub env: EnvKind,
    /// Which world model dreams (the side-by-side mode runs both).
    pub family: DreamFamily,
    /// M's sampling temperature.
    pub tau: f32,
    /// The flow dream's sampling steps and temperature.
    pub flow: FlowKnobs,
    /// The factor on the odds of M's done head (1: as trained).
    pub done_odds: f32,
    /// How M's done head ends the dream: drawn (the app's default, as the shipped Cs were evolved)
    /// or the paper's threshold.
    pub done_rule: DoneRule,
    /// The dream C was evolved in, when the model records it.
    pub evolved_dream: Option<EvolvedDream>,
    pub driver: Driver,
    /// Steps requested while paused (N), still to run.
    pub pending_steps: u32,
    /// Sim steps taken since the app started: what the instruments follow.
    pub steps_taken: u64,
    /// Lockstep: the dream is reset to reality every this many steps (`None`: open loop).
    pub resync_every: Option<u32>,
    /// The user asked for C this frame; applied by the next sim step's takeover rule.
    pub hand_back_requested: bool,
    /// The human's smoothed controls (the HUD bars while the human drives).
    pub human_axes: HumanAxes,
    /// The action sent on the last step, whoever chose it (the HUD bars).
    pub last_action: Vec<f32>,
}

impl Session {
    pub fn new(env: EnvKind) -> Self {
        Self {
            env,
            family: DreamFamily::default(),
            tau: default_tau(env),
            flow: FlowKnobs::default(),
            done_odds: 1.0,
            done_rule: DoneRule::Sample,
            evolved_dream: None,
            driver: Driver::Human,
            pending_steps: 0,
            steps_taken: 0,
            resync_every: None,
            hand_back_requested: false,
            human_axes: HumanAxes::default(),
            last_action: idle_action(env),
        }
    }

    /// Dreams as C was evolved to, if the model says how: its tau, done odds and done rule.
    /// Otherwise the env's default tau, M's own odds, drawn.
    pub fn dream_as_trained(&mut self) {
        let (tau, odds, rule) = self
            .evolved_dream
            .map_or((default_tau(self.env), 1.0, DoneRule::default()), |dream| {
                (dream.tau, dream.done_odds, dream.done_rule)
            });
        self.tau = clamp_tau(self.env, tau, self.tau);
        self.done_odds = clamp_done_odds(odds, self.done_odds);
        self.done_rule = rule;
    }

    /// A fresh session for `env` that dreams as the loaded model's C was evolved to.
    pub fn for_model(env: EnvKind, runtime: &mut WorldModelRuntime) -> Self {
        let mut session = Self::new(env);
        session.evolved_dream = runtime
            .runner
            .as_ref()
            .and_then(|runner| runner.evolved_dream());
        session.dream_as_trained();
        session.apply_done(runtime);
        session
    }

    /// Hands the session's done odds and rule to the dream, and its knobs to the flow dream.
    pub(super) fn apply_done(&self, runtime: &mut WorldModelRuntime) {
        if let Some(runner) = runtime.runner.as_deref_mut() {
            runner.set_done_odds(self.done_odds);
            runner.set_done_rule(self.done_rule);
            // The knobs are clamped to what the flow dream samples with, so this cannot fail.
            let _ = runner.set_flow_knobs(self.flow);
        }
    }

    /// Whether the flow dream is the one that dreams, outside the side-by-side mode.
    pub fn dreams_with_flow(&self) -> bool {
        self.family == DreamFamily::Flow
    }

    /// The dream `mode` steps and the dream pane shows: the session's, except in the latent
    /// explorer (it edits V's z) and side by side (the pane is the 2018 dream's; the flow dream has
    /// its own).
    pub fn family_in(&self, mode: Mode) -> DreamFamily {
        match mode {
            Mode::LatentExplorer | Mode::SideBySide => DreamFamily::MdnRnn,
            Mode::DriveReality | Mode::DriveDream | Mode::Lockstep => self.family,
        }
    }

    /// Whether `mode` shows the 2018 dream and the flow dream.
    pub fn dreams_shown(&self, mode: Mode) -> (bool, bool) {
        match (mode, self.family_in(mode)) {
            (Mode::SideBySide, _) => (true, true),
            (_, DreamFamily::MdnRnn) => (true, false),
            (_, DreamFamily::Flow) => (false, true),
        }
    }

    /// The axes shown on the HUD: the last action sent.
    pub fn shown_axes(&self) -> HumanAxes {
        axes_from_action(self.env, &self.last_action)
    }
}
