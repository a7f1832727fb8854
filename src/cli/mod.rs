//! The command line: thin wrappers that parse arguments and call the library.

mod bench;
mod collect;
mod env;
mod eval;
mod play;
mod train;
mod train_controller;

use clap::{Parser, Subcommand};

use crate::envs::EnvKind;

/// World Models you can play: real envs, V, M, C and the dream.
#[derive(Debug, Parser)]
#[command(name = "dreamplay", version, about, propagate_version = true)]
pub struct Cli {
    /// With no command, the playground opens (as `dreamplay play`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the real environments headless: episodes, step-by-step traces, GIFs.
    #[command(subcommand)]
    Env(env::EnvCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Random-policy rollouts of a real env, one .npz per rollout: the data V and M train on.
    Collect(collect::CollectArgs),
    /// Fit V (the ConvVAE) on the collected frames, streaming them; checkpoints and resumes.
    TrainVae(train::TrainVaeArgs),
    /// Encode every rollout with V into mu/logvar series, so M trains without frames.
    Encode(train::EncodeArgs),
    /// Fit M (the MDN-RNN) on the encoded series; checkpoints and resumes.
    TrainMdrnn(train::TrainMdrnnArgs),
    /// Ship a run: its bundle in f16 into models/<env>/, with plots, a fresh score and a model card.
    Export(train::ExportArgs),
    /// Evolve C with CMA-ES in M's dream (or the real env); checkpoints and resumes.
    TrainController(train_controller::TrainControllerArgs),
    /// Score C in the real env (and in the dream at chosen temperatures), or the random baseline.
    Eval(eval::EvalArgs),
    /// The playground: reality, what V sees and the dream side by side; drive, or let C drive.
    Play(play::PlayArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Env(cmd)) => env::run(cmd),
        Some(Command::Bench(cmd)) => bench::run(cmd),
        Some(Command::Collect(args)) => collect::run(args),
        Some(Command::TrainVae(args)) => train::train_vae_cmd(args),
        Some(Command::Encode(args)) => train::encode_cmd(args),
        Some(Command::TrainMdrnn(args)) => train::train_mdrnn_cmd(args),
        Some(Command::Export(args)) => train::export_cmd(args),
        Some(Command::TrainController(args)) => train_controller::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Play(args)) => play::run(args),
        None => play::run(play::PlayArgs::default()),
    }
}

/// clap value parser for env names, so a typo lists the valid names.
pub(crate) fn parse_env(s: &str) -> Result<EnvKind, String> {
    s.parse()
        .map_err(|e: crate::envs::UnknownEnv| e.to_string())
}
