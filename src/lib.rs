//! dreamplay: Ha & Schmidhuber's *World Models* as something to play with.
//!
//! Data flows one way: `envs` (frames) -> V (z) -> M (next z, done, reward) -> dream -> app.
//!
//! - [`envs`]: the real environments, CarRacing and Take Cover. No bevy, no burn.
//! - [`model`]: V (ConvVAE), M (MDN-RNN), C (linear controller) in burn, the model file, the backend choice.
//! - [`dream`]: M and V stepped like an env, one dream or a batch.
//! - [`policy`]: model-free action samplers (random policies).
//! - [`record`]: GIF recording of frames.
//! - [`train`]: the pipeline: collect, fit, evolve, evaluate.
//! - [`cli`]: the `dreamplay` command line.

pub mod app;
pub mod cli;
pub mod dream;
pub mod envs;
pub mod model;
pub mod policy;
pub mod record;
pub mod train;
