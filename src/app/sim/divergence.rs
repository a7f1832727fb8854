//! Lockstep's gap between reality and the dream.

use std::collections::VecDeque;

use bevy::prelude::*;

/// Points kept in the lockstep plot.
pub const DIVERGENCE_HISTORY: usize = 1000;

/// Lockstep's gap between reality and the dream, one point per step.
#[derive(Resource, Debug, Clone, Default)]
pub struct Divergence {
    /// (steps since the dream was last synced to reality, mean absolute pixel error in [0, 1], L2
    /// distance between V(real) and the dream's z).
    pub points: VecDeque<(u32, f64, f64)>,
    /// Steps since the last sync (the fork, or a re-sync).
    pub steps: u32,
    /// Re-syncs since the fork.
    pub syncs: u32,
    /// The side-by-side mode's flow dream, at the same steps: (steps since the sync, pixel error,
    /// distance between V's encodings of the real and the flow frame).
    pub flow_points: VecDeque<(u32, f64, f64)>,
}

impl Divergence {
    pub(super) fn clear(&mut self) {
        self.points.clear();
        self.flow_points.clear();
        self.steps = 0;
        self.syncs = 0;
    }

    /// The dream was reset to reality: later points count from here; earlier ones stay.
    pub(super) fn resync(&mut self) {
        self.steps = 0;
        self.syncs += 1;
    }

    pub(super) fn push(&mut self, pixel_error: f64, z_distance: f64) {
        if self.points.len() == DIVERGENCE_HISTORY {
            self.points.pop_front();
        }
        self.steps += 1;
        self.points.push_back((self.steps, pixel_error, z_distance));
    }

    /// The flow dream's gap at the step [`push`](Self::push) has just counted.
    pub(super) fn push_flow(&mut self, pixel_error: f64, z_distance: f64) {
        if self.flow_points.len() == DIVERGENCE_HISTORY {
            self.flow_points.pop_front();
        }
        self.flow_points
            .push_back((self.steps, pixel_error, z_distance));
    }

    /// The mean pixel error and z distance at each number of steps since a sync, ascending: the
    /// error against the dream's horizon, averaged over every sync so far.
    pub fn by_horizon(&self) -> Vec<(u32, f64, f64)> {
        by_horizon(&self.points)
    }

    /// As [`by_horizon`](Self::by_horizon), for the side-by-side mode's flow dream.
    pub fn flow_by_horizon(&self) -> Vec<(u32, f64, f64)> {
        by_horizon(&self.flow_points)
    }
}

fn by_horizon(points: &VecDeque<(u32, f64, f64)>) -> Vec<(u32, f64, f64)> {
    let mut sums: std::collections::BTreeMap<u32, (f64, f64, u32)> = Default::default();
    for &(steps, pixel, z) in points {
        let entry = sums.entry(steps).or_default();
        entry.0 += pixel;
        entry.1 += z;
        entry.2 += 1;
    }
    sums.into_iter()
        .map(|(steps, (pixel, z, n))| (steps, pixel / f64::from(n), z / f64::from(n)))
        .collect()
}

/// Euclidean distance over the common length of two latents.
pub fn l2_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}
