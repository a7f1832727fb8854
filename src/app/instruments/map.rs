//! The latent map's live paths: where reality's frames (V's encodings) and the dream's z go. The
//! projection and the data's cloud ship in the model bundle.

use std::collections::VecDeque;

use bevy::prelude::*;

use super::super::commands::{Instrument, Mode};
use super::super::sim::{DreamEpisode, Session};
use super::super::world_model::{View, WorldModelRuntime};
use super::{Instruments, source_view};

/// Points kept per path.
pub const TRAIL_LENGTH: usize = 300;

/// Recent z of reality and of the dream, in full (the panel projects them).
#[derive(Resource, Debug, Clone, Default)]
pub struct LatentTrails {
    pub reality: VecDeque<Vec<f32>>,
    pub dream: VecDeque<Vec<f32>>,
    pub generation: u64,
}

impl LatentTrails {
    fn push(trail: &mut VecDeque<Vec<f32>>, z: Vec<f32>) {
        // A new env (another z size) starts a new path.
        if trail.back().is_some_and(|last| last.len() != z.len()) {
            trail.clear();
        }
        if trail.len() == TRAIL_LENGTH {
            trail.pop_front();
        }
        trail.push_back(z);
    }
}

pub(super) fn follow_paths(
    instruments: Res<Instruments>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    dream: Res<DreamEpisode>,
    runtime: Res<WorldModelRuntime>,
    mut trails: ResMut<LatentTrails>,
    mut seen: Local<(u64, u64)>,
) {
    if !instruments.is_open(Instrument::Map) {
        return;
    }
    let Some(runner) = runtime.runner.as_deref() else {
        return;
    };
    let key = (session.steps_taken, dream.generation);
    if *seen == key {
        return;
    }
    let stepped = seen.0 != session.steps_taken;
    *seen = key;
    if stepped
        && source_view(*mode.get(), session.family) == View::Reality
        && let Some(z) = runner.reality_z()
    {
        LatentTrails::push(&mut trails.reality, z);
    }
    if dream.forked {
        LatentTrails::push(&mut trails.dream, runner.z());
    }
    trails.generation += 1;
}

/// The point nearest `at` among `points` (both in the same units), if one lies within
/// `max_distance`: what a click on the map picks.
pub fn nearest_point(points: &[[f32; 2]], at: [f32; 2], max_distance: f32) -> Option<usize> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| (i, (p[0] - at[0]).powi(2) + (p[1] - at[1]).powi(2)))
        .filter(|(_, d)| *d <= max_distance * max_distance)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_picks_the_nearest_point_within_reach() {
        let points = [[0.0, 0.0], [10.0, 0.0], [10.0, 3.0]];
        assert_eq!(nearest_point(&points, [9.0, 1.0], 5.0), Some(1));
        assert_eq!(nearest_point(&points, [10.0, 2.5], 5.0), Some(2));
        assert_eq!(nearest_point(&points, [50.0, 50.0], 5.0), None);
        assert_eq!(nearest_point(&[], [0.0, 0.0], 5.0), None);
    }
}
