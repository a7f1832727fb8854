//! Inside M: the mixture of gaussians M predicted for one latent dimension's next value, beside
//! the value the dream drew from it and, when reality steps, the value V gives the real frame.

use bevy::prelude::*;

use super::super::commands::{Instrument, Mode};
use super::super::sim::{DreamEpisode, Reality, Session};
use super::super::world_model::{View, WorldModelRuntime};
use super::{Instruments, source_view};
use crate::model::mdrnn::DimMixture;

/// The mixture panel's numbers.
#[derive(Resource, Debug, Clone, Default)]
pub struct MixtureReadout {
    pub dim: usize,
    /// The temperature the dream drew at.
    pub tau: f32,
    /// M's prediction for z[dim], from the step that drew the dream's current z.
    pub mixture: Option<DimMixture>,
    /// The value the dream drew (its z[dim] now).
    pub sampled: Option<f32>,
    /// V's encoding of the real frame at the same step, when reality steps beside the dream.
    pub real: Option<f32>,
    pub generation: u64,
    /// What the readout was read from: (sim step, dream generation, dim, tau bits).
    seen: Option<(u64, u64, usize, u32)>,
}

pub(super) fn read_mixture(
    instruments: Res<Instruments>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    reality: Res<Reality>,
    dream: Res<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut readout: ResMut<MixtureReadout>,
) {
    if !instruments.is_open(Instrument::Mixture) {
        return;
    }
    let most_variable = || {
        let stats = runtime.runner.as_deref()?.latent_stats()?;
        (0..stats.dims.len()).max_by(|a, b| stats.dims[*a].sd.total_cmp(&stats.dims[*b].sd))
    };
    let dim = instruments.mixture_dim.or_else(most_variable).unwrap_or(0);
    let key = (
        session.steps_taken,
        dream.generation,
        dim,
        session.tau.to_bits(),
    );
    if readout.seen == Some(key) {
        return;
    }
    readout.seen = Some(key);
    let Some(runner) = runtime.runner.as_deref_mut() else {
        *readout = MixtureReadout {
            seen: readout.seen,
            ..Default::default()
        };
        return;
    };
    let dim = dim.min(runner.z_size().saturating_sub(1));
    let mixture = runner.mixture(dim);
    let sampled = mixture.as_ref().and_then(|_| runner.z().get(dim).copied());
    // Reality's frame is the same step's only where reality and the dream step together.
    let real = if mixture.is_some() && source_view(*mode.get(), session.family) == View::Reality {
        runner
            .encode(&reality.obs)
            .ok()
            .and_then(|z| z.get(dim).copied())
    } else {
        None
    };
    readout.dim = dim;
    readout.tau = session.tau;
    readout.mixture = mixture;
    readout.sampled = sampled;
    readout.real = real;
    readout.generation += 1;
}
