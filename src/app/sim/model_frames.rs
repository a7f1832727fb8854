//! V's and M's frames for the views, decoded once per display frame at most.

use std::time::Instant;

use bevy::prelude::*;

use super::super::world_model::WorldModelRuntime;
use super::dream_episode::{DreamEpisode, with_runner};
use super::notice::Notice;
use super::reality::Reality;
use super::timings::{Timings, millis};
use crate::envs::Frame;

/// V's and M's frames for the views, decoded once per display frame at most.
#[derive(Resource, Debug, Clone, Default)]
pub struct ModelFrames {
    /// V's reconstruction of the current real observation.
    pub reconstruction: Option<Frame>,
    /// The dream's current z, decoded.
    pub dream: Option<Frame>,
    seen_reality: Option<u64>,
    seen_dream: Option<u64>,
}

/// Decodes V's reconstruction and the dream frame when their inputs changed (at most once per
/// display frame, however many sim steps ran).
pub(super) fn refresh_model_frames(
    reality: Res<Reality>,
    dream: Res<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut frames: ResMut<ModelFrames>,
    mut notice: ResMut<Notice>,
    mut timings: ResMut<Timings>,
) {
    if runtime.runner.is_none() {
        frames.reconstruction = None;
        frames.dream = None;
        return;
    }
    if frames.seen_reality != Some(reality.generation) {
        frames.seen_reality = Some(reality.generation);
        let obs = reality.obs.clone();
        frames.reconstruction =
            with_runner(&mut runtime, &mut notice, |runner| runner.reconstruct(&obs));
    }
    if frames.seen_dream != Some(dream.generation) {
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
}
