//! dreamplay: Ha & Schmidhuber's *World Models* as something to play with.
//!
//! Data flows one way: `envs` (frames) -> V (z) -> M (next z, done, reward) -> dream -> app.
//! `docs/architecture.md` names the one home of every concept.
//!
//! - [`envs`]: the real environments, CarRacing and Take Cover. No bevy, no burn.
//! - [`agent`]: everything that acts (random, still, sweep, human, C), behind one trait.
//! - [`model`]: V (ConvVAE), M (MDN-RNN, with its done rule), C (linear controller) in burn, the
//!   model file, the backend choice.
//! - [`dream`]: M and V stepped like an env, one dream or a batch, and M's memory of reality.
//! - [`train`]: the pipeline: collect, fit, evolve, evaluate, export.
//! - [`bench`]: `dreamplay bench model`'s timings.
//! - [`app`]: the bevy + egui playground.
//! - [`record`]: GIF recording of frames.
//! - [`cli`]: the `dreamplay` command line.

pub mod agent;
pub mod app;
pub mod bench;
pub mod cli;
pub mod dream;
pub mod envs;
pub mod model;
pub mod record;
pub mod train;
