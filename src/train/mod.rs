//! The pipeline: collect rollouts, fit V and M, evolve C, evaluate.
//!
//! Every stage after `collect` works in one run folder (`runs/<env>` by default):
//!
//! ```text
//! runs/take-cover/
//!   world-model.bin      the bundle, f32: train-vae writes V, train-mdrnn adds M, train-controller adds C
//!   vae/                 checkpoint, optimizer state, loss.csv, loss.png, reconstructions.png
//!   series/              encode's mu/logvar series, one .npz per rollout
//!   mdrnn/               checkpoint, optimizer state, loss.csv, loss.png
//!   controller/          CMA-ES state, fitness.csv, fitness.png
//! ```
//! `dreamplay export` then writes the bundle in f16 to `models/<env>/` with its model card.
//! `dreamplay eval` scores C (`eval.rs`) and measures the dream against reality (`fidelity.rs`).

pub mod checkpoint;
pub mod cmaes;
pub mod collect;
pub mod controller;
pub mod encode;
pub mod eval;
pub mod export;
pub mod fidelity;
pub mod flow;
pub mod mdrnn;
pub mod plot;
pub mod progress;
pub mod rollout;
pub mod stage;
pub mod table;
pub mod vae;

use std::path::{Path, PathBuf};

use crate::envs::EnvKind;

/// The pipeline's commands for `env` in the order they run, as the README lists them: what the
/// app, the errors and the docs tell a user to run.
/// Each runs as printed: collect's data set goes where the later stages read it by default.
pub fn pipeline_commands(env: EnvKind) -> Vec<String> {
    let collect = format!(
        "dreamplay collect --env {env} --rollouts {} --out data/{env}",
        starter_rollouts(env)
    );
    let stages = [
        "train-vae",
        "encode",
        "train-mdrnn",
        "train-controller",
        "export",
    ]
    .iter()
    .map(|command| format!("dreamplay {command} --env {env}"));
    std::iter::once(collect).chain(stages).collect()
}

/// The commands that train and ship a flow model for `env`, from the rollouts `collect` wrote
/// (`train-decoder`, which sharpens its frames, is optional).
pub fn flow_pipeline_commands(env: EnvKind) -> Vec<String> {
    [
        "train-autoencoder",
        "encode-latents",
        "train-flow",
        "export-flow",
    ]
    .iter()
    .map(|command| format!("dreamplay {command} --env {env}"))
    .collect()
}

/// Rollouts for a first model: enough for V and M to learn the env's look and its deaths in an
/// hour or two here (the shipped models' cards say what they used).
fn starter_rollouts(env: EnvKind) -> u32 {
    match env {
        EnvKind::CarRacing => 160,
        EnvKind::TakeCover => 400,
    }
}

/// A config's defaults as its clap attributes state them, so a flag's default and the config's
/// are one value. `required` gives the flags that have no default (e.g. `["--env", "take-cover"]`).
///
/// Panics only if `T` has a required flag `required` leaves out: a mistake in `T`'s attributes,
/// which the unit test of each config's `new` catches.
pub(crate) fn flag_defaults<T: clap::Args + clap::FromArgMatches>(required: &[&str]) -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true));
    command
        .try_get_matches_from(required)
        .and_then(|matches| T::from_arg_matches(&matches))
        .unwrap_or_else(|e| panic!("every flag of a config has a default: {e}"))
}

/// The run's bundle (f32), which each stage adds its part to.
pub fn run_model_path(run: &Path) -> PathBuf {
    run.join("world-model.bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_runs_every_stage_in_order() {
        let commands = pipeline_commands(EnvKind::TakeCover);
        assert_eq!(commands.len(), 6);
        assert_eq!(
            commands[0],
            "dreamplay collect --env take-cover --rollouts 400 --out data/take-cover"
        );
        assert_eq!(commands[2], "dreamplay encode --env take-cover");
        assert_eq!(commands[5], "dreamplay export --env take-cover");
    }

    /// The defaults the configs had before their flags became their home.
    #[test]
    fn configs_take_their_defaults_from_their_flags() {
        let env = EnvKind::TakeCover;
        let v = vae::VaeTrainConfig::new(env, "d".into(), "r".into());
        assert_eq!(
            (v.epochs, v.batch_size, v.learning_rate, v.val_fraction),
            (1, 32, 1e-3, 0.05)
        );
        assert_eq!(
            (
                v.frame_stride,
                v.chunk,
                v.checkpoint_every,
                v.hazard_repeats
            ),
            (1, 16, 200, 0)
        );
        assert_eq!((v.sprite_weight, v.seed, v.env), (0.0, 0, env));
        assert_eq!(
            (v.data_dir.to_str(), v.run_dir.to_str()),
            (Some("d"), Some("r"))
        );

        let m = mdrnn::MdrnnTrainConfig::new(env, "r".into());
        assert_eq!(
            (
                m.epochs,
                m.batch_size,
                m.seq_len,
                m.learning_rate,
                m.val_fraction
            ),
            (10, 32, 100, 1e-3, 0.05)
        );
        assert_eq!(
            (m.checkpoint_every, m.seed, m.burn_in, m.warm_start),
            (100, 0, 0, false)
        );

        let c = controller::ControllerTrainConfig::new(env, "r".into(), "d".into());
        assert_eq!(c.fitness, controller::FitnessMode::Dream);
        assert_eq!(c.tau, crate::model::mdrnn::PAPER_DOOM_TAU);
        assert_eq!(c.done_rule, crate::model::mdrnn::DoneRule::Sample);
        assert_eq!((c.done_odds, c.dream_context, c.population), (1.0, 0, 32));
        assert_eq!(c.trials, controller::FitnessMode::Dream.default_trials());
        assert_eq!((c.sigma0, c.weight_decay, c.generations), (0.1, 0.01, 40));
        assert_eq!(c.max_steps, collect::default_max_steps(env));
        assert_eq!((c.seed, c.eval_every, c.eval_episodes), (0, 10, 8));
        assert!(!c.fresh && !c.warm_start && !c.common_seeds);

        let e = eval::EvalConfig::new(env, "m".into());
        assert_eq!((e.episodes, e.seed), (100, 0));
        assert_eq!(e.max_steps, collect::default_max_steps(env));
        assert!(e.dream_taus.is_empty() && e.baseline.is_none() && e.csv.is_none());
        assert_eq!(e.done_rule, crate::model::mdrnn::DoneRule::Sample);
        assert_eq!((e.done_odds, e.dream_context), (1.0, 0));
        assert!(!e.done_along_reality);
    }
}
