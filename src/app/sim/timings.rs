//! Frame and dream-step times for the HUD and `--bench-frames`.

use std::collections::VecDeque;
use std::time::Duration;

use bevy::prelude::*;

/// Timing samples kept for the HUD's rolling figures.
pub const TIMING_WINDOW: usize = 120;

/// Rolling samples of a duration, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub recent: VecDeque<f64>,
    /// Every sample, for `--bench-frames` (only filled while `keep_all`).
    pub all: Vec<f64>,
    pub keep_all: bool,
}

impl Samples {
    pub fn push(&mut self, milliseconds: f64) {
        if self.recent.len() == TIMING_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(milliseconds);
        if self.keep_all {
            self.all.push(milliseconds);
        }
    }

    /// The median of the recent samples: one slow frame (a shader compiling) does not swing it.
    pub fn median_recent(&self) -> Option<f64> {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }

    pub fn mean_recent(&self) -> Option<f64> {
        (!self.recent.is_empty())
            .then(|| self.recent.iter().sum::<f64>() / self.recent.len() as f64)
    }
}

/// Frame and dream-step times for the HUD and the benchmark.
#[derive(Resource, Debug, Clone, Default)]
pub struct Timings {
    pub frame: Samples,
    /// One M step (sampling the next z included).
    pub dream_step: Samples,
    /// V decoding the dream's z into the frame shown.
    pub dream_decode: Samples,
    /// One flow-dream step: sampling the next latent in the knob's steps and drawing it.
    pub flow_step: Samples,
    /// The open instrument's work in one sim step (the fan: M on every future, then V on all).
    pub instrument: Samples,
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
