//! V's and the dreams' frames for the views, decoded once per display frame at most.

use std::time::Instant;

use bevy::prelude::*;

use super::super::commands::Mode;
use super::super::world_model::WorldModelRuntime;
use super::dream_episode::{DreamEpisode, with_flow, with_runner};
use super::notice::Notice;
use super::reality::Reality;
use super::session::Session;
use super::timings::{Timings, millis};
use crate::envs::Frame;

/// V's and the dreams' frames for the views, decoded once per display frame at most.
#[derive(Resource, Debug, Clone, Default)]
pub struct ModelFrames {
    /// V's reconstruction of the current real observation.
    pub reconstruction: Option<Frame>,
    /// The 2018 dream's current z, decoded by V.
    pub dream: Option<Frame>,
    /// The flow dream's current latent, drawn by its autoencoder.
    pub flow_dream: Option<Frame>,
    seen_reality: Option<u64>,
    seen_dream: Option<u64>,
    seen_flow: Option<u64>,
}

impl ModelFrames {
    /// The frame the dream pane shows in `mode`: the flow dream's where it is the one dreaming.
    pub fn dream_pane(&self, session: &Session, mode: Mode) -> Option<&Frame> {
        match session.dreams_shown(mode) {
            (false, true) => self.flow_dream.as_ref(),
            _ => self.dream.as_ref(),
        }
    }
}

/// Decodes V's reconstruction and the dream frames shown when their inputs changed (at most once
/// per display frame, however many sim steps ran); a dream not on screen is not decoded.
#[allow(clippy::too_many_arguments)]
pub(super) fn refresh_model_frames(
    reality: Res<Reality>,
    mut dream: ResMut<DreamEpisode>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut frames: ResMut<ModelFrames>,
    mut notice: ResMut<Notice>,
    mut timings: ResMut<Timings>,
) {
    if runtime.runner.is_none() {
        frames.reconstruction = None;
        frames.dream = None;
        frames.flow_dream = None;
        return;
    }
    if frames.seen_reality != Some(reality.generation) {
        frames.seen_reality = Some(reality.generation);
        let obs = reality.obs.clone();
        frames.reconstruction =
            with_runner(&mut runtime, &mut notice, |runner| runner.reconstruct(&obs));
    }
    let (shows_mdn, shows_flow) = session.dreams_shown(*mode.get());
    if !shows_mdn {
        frames.seen_dream = None;
    } else if frames.seen_dream != Some(dream.generation) {
        frames.seen_dream = Some(dream.generation);
        frames.dream = if dream.forked {
            let started = Instant::now();
            let decoded = with_runner(&mut runtime, &mut notice, |runner| runner.frame());
            timings.dream_decode.push(millis(started.elapsed()));
            decoded
        } else {
            None
        };
    }
    if !shows_flow {
        frames.seen_flow = None;
    } else if frames.seen_flow != Some(dream.flow_generation) {
        frames.seen_flow = Some(dream.flow_generation);
        frames.flow_dream = if dream.flow_forked {
            with_flow(&mut runtime, &mut dream, &mut notice, |runner| {
                runner.flow_frame()
            })
        } else {
            None
        };
    }
}
