//! Lockstep's gap between reality and the dream.

use std::collections::VecDeque;

use bevy::prelude::*;

use crate::envs::Frame;

/// Points kept in the lockstep plot.
pub const DIVERGENCE_HISTORY: usize = 1000;

/// Lockstep's gap between reality and the dream, one point per step.
#[derive(Resource, Debug, Clone, Default)]
pub struct Divergence {
    /// (lockstep step, mean absolute pixel error in [0, 1], L2 distance between V(real) and the dream's z).
    pub points: VecDeque<(u32, f64, f64)>,
    pub steps: u32,
}

impl Divergence {
    pub(super) fn clear(&mut self) {
        self.points.clear();
        self.steps = 0;
    }

    pub(super) fn push(&mut self, pixel_error: f64, z_distance: f64) {
        if self.points.len() == DIVERGENCE_HISTORY {
            self.points.pop_front();
        }
        self.points.push_back((self.steps, pixel_error, z_distance));
        self.steps += 1;
    }
}

/// Mean absolute difference of two frames' RGB values, in [0, 1]; frames of different sizes compare
/// over their common area.
pub fn mean_abs_pixel_error(a: &Frame, b: &Frame) -> f64 {
    let (width, height) = (a.width().min(b.width()), a.height().min(b.height()));
    if width == 0 || height == 0 {
        return 0.0;
    }
    let mut total = 0u64;
    for y in 0..height {
        for x in 0..width {
            let (pa, pb) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            total += (0..3)
                .map(|c| u64::from(pa[c].abs_diff(pb[c])))
                .sum::<u64>();
        }
    }
    total as f64 / (f64::from(width) * f64::from(height) * 3.0 * 255.0)
}

/// Euclidean distance over the common length of two latents.
pub fn l2_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}
