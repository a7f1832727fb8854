//! dreamplay: Ha & Schmidhuber's *World Models* as something to play with.
//!
//! Data flows one way: `envs` (frames) -> V (z) -> M (next z, done, reward) -> dream -> app.

pub mod cli;
pub mod envs;
