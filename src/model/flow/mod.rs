//! The flow-matching world model: a second family beside V and M, after DIAMOND, GameNGen and
//! Dreamer 4, sized for two CPU cores ([docs/flow.md](../../../docs/flow.md)).
//!
//! Data flow: frame -> [`Autoencoder`] -> a spatial latent (4 x 16 x 16, normalised by
//! [`LatentStats`]); the last [`FlowSpec::context`] latents and actions -> [`Dynamics`] -> the
//! velocity that carries noise to the next latent, sampled in 1-8 Euler steps ([`shortcut`]);
//! consecutive latents and the action -> [`EndHeads`] -> done and reward.

pub mod autoencoder;
pub mod critic;
pub mod dynamics;
pub mod file;
pub mod shortcut;

pub use autoencoder::{Autoencoder, AutoencoderConfig};
pub use dynamics::{Dynamics, DynamicsConfig, EndHeads, EndHeadsConfig};

use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

use crate::envs::EnvKind;
use crate::model::bundle::TrainingInfo;

/// The sizes that fix every tensor shape of the flow model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    pub env: EnvKind,
    /// Channels of the spatial latent.
    pub latent_channels: usize,
    /// The latent's side: 64 / 4.
    pub latent_side: usize,
    /// Past latents (and actions) the dynamics sees.
    pub context: usize,
    pub action_size: usize,
    /// The autoencoder's channels at 32x32 and at 16x16.
    pub autoencoder_widths: [usize; 2],
    /// The UNet's channels at 16x16, 8x8 and 4x4.
    pub unet_widths: [usize; 3],
    /// The conditioning vector (noise level, step size, actions, context noise).
    pub cond_size: usize,
}

impl FlowSpec {
    /// The shipped sizes for `env` (what docs/flow.md measured and chose).
    pub fn default_for(env: EnvKind) -> Self {
        Self {
            env,
            latent_channels: 4,
            latent_side: 16,
            context: 4,
            action_size: crate::model::ModelSpec::paper(env).action_size,
            autoencoder_widths: [32, 64],
            unet_widths: [48, 96, 128],
            cond_size: 128,
        }
    }

    /// Numbers in one latent.
    pub fn latent_len(&self) -> usize {
        self.latent_channels * self.latent_side * self.latent_side
    }

    pub fn autoencoder_config(&self) -> AutoencoderConfig {
        AutoencoderConfig::new(self.latent_channels, self.autoencoder_widths)
    }

    pub fn dynamics_config(&self) -> DynamicsConfig {
        DynamicsConfig::new(
            self.latent_channels,
            self.context,
            self.action_size,
            self.unet_widths,
            self.cond_size,
        )
    }

    pub fn end_heads_config(&self) -> EndHeadsConfig {
        EndHeadsConfig::new(self.latent_channels, self.action_size)
            .with_latent_side(self.latent_side)
    }

    /// Sizes this build can run, checked before any tensor is made from a file's header: the
    /// latent fits the frame, the networks' own checks pass (group norm's groups divide every
    /// width), and no size is large enough to exhaust memory.
    pub fn check(&self) -> Result<(), String> {
        let fits = |name: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} {value} is outside 1..={max}"))
            }
        };
        fits("latent_channels", self.latent_channels, 64)?;
        fits("latent_side", self.latent_side, 256)?;
        fits("context", self.context, 16)?;
        fits("action_size", self.action_size, 16)?;
        fits("cond_size", self.cond_size, 4096)?;
        for w in self.autoencoder_widths {
            fits("an autoencoder width", w, 1024)?;
        }
        for w in self.unet_widths {
            fits("a UNet width", w, 1024)?;
        }
        if !self.latent_side.is_multiple_of(4)
            || self.latent_side * 4 != crate::envs::OBS_SIZE as usize
        {
            return Err(format!(
                "latent_side {} does not fit a {}-pixel frame downsampled 4x",
                self.latent_side,
                crate::envs::OBS_SIZE
            ));
        }
        self.dynamics_config()
            .validate()
            .and_then(|()| self.end_heads_config().validate())
            .map_err(|e| e.to_string())?;
        let env_actions = crate::model::ModelSpec::paper(self.env).action_size;
        if self.action_size != env_actions {
            return Err(format!(
                "action_size {} but {} has {env_actions}",
                self.action_size, self.env
            ));
        }
        Ok(())
    }
}

/// Per-channel mean and standard deviation of the autoencoder's latents on the training data:
/// the dynamics works on `(latent - mean) / std`, so that its noise and its data share a scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl LatentStats {
    /// `(latent - mean) / std` per channel, in place on `[.., C, S, S]` values laid out
    /// channel-major per latent (`latent_len` numbers each).
    pub fn normalise(&self, values: &mut [f32], latent_len: usize) {
        self.apply(values, latent_len, |v, m, s| (v - m) / s);
    }

    /// The inverse of [`normalise`](Self::normalise).
    pub fn denormalise(&self, values: &mut [f32], latent_len: usize) {
        self.apply(values, latent_len, |v, m, s| v * s + m);
    }

    fn apply(&self, values: &mut [f32], latent_len: usize, f: impl Fn(f32, f32, f32) -> f32) {
        let channels = self.mean.len().max(1);
        let plane = latent_len / channels;
        for latent in values.chunks_mut(latent_len) {
            for (c, channel) in latent.chunks_mut(plane.max(1)).enumerate() {
                let (m, s) = (self.mean[c % channels], self.std[c % channels]);
                channel.iter_mut().for_each(|v| *v = f(*v, m, s));
            }
        }
    }
}

/// How each part of the flow model was trained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowProvenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoencoder: Option<TrainingInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<TrainingInfo>,
    /// `train-decoder`'s fine-tune of the decoder, when the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<TrainingInfo>,
}

/// The flow model in memory. Parts are optional, as in a bundle: the autoencoder is trained
/// first, then the dynamics and its heads.
#[derive(Debug, Clone)]
pub struct FlowModel<B: Backend> {
    pub spec: FlowSpec,
    pub provenance: FlowProvenance,
    /// Set by `encode-latents`, which the dynamics' training needs.
    pub latent_stats: Option<LatentStats>,
    pub autoencoder: Option<Autoencoder<B>>,
    pub dynamics: Option<Dynamics<B>>,
    pub end_heads: Option<EndHeads<B>>,
}

impl<B: Backend> FlowModel<B> {
    pub fn empty(spec: FlowSpec) -> Self {
        Self {
            spec,
            provenance: FlowProvenance::default(),
            latent_stats: None,
            autoencoder: None,
            dynamics: None,
            end_heads: None,
        }
    }
}
