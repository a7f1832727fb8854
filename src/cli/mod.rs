//! The command line: thin wrappers that parse arguments and call the library.

mod bench;
mod collect;
mod env;
mod eval;
mod flow;
mod inspect;
mod play;
mod train;
mod train_controller;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::envs::EnvKind;
use crate::model::backend::{self, BackendRequest, Selection};

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
    /// Fit the flow model's autoencoder (frames <-> 16x16 latents, 4 channels unless told) on the collected frames.
    TrainAutoencoder(flow::TrainAutoencoderArgs),
    /// Fine-tune the flow model's decoder alone for sharper frames; the latents and dynamics stay valid.
    TrainDecoder(flow::TrainDecoderArgs),
    /// Encode every rollout with the flow model's autoencoder, so its dynamics trains without frames.
    EncodeLatents(flow::EncodeLatentsArgs),
    /// Fit the flow model's dynamics (flow matching with shortcuts) and its done/reward heads.
    TrainFlow(flow::TrainFlowArgs),
    /// Ship a run: its bundle in f16 into models/<env>/, with plots, a fresh score and a model card.
    Export(train::ExportArgs),
    /// Ship a run's flow model beside the bundle: f16, its pictures, both families measured
    /// open-loop and side by side, and its section of the model card.
    ExportFlow(flow::ExportFlowArgs),
    /// Evolve C with CMA-ES in M's dream (or the real env); checkpoints and resumes.
    TrainController(train_controller::TrainControllerArgs),
    /// Score C in the real env (and in the dream at chosen temperatures), or the random baseline.
    Eval(eval::EvalArgs),
    /// Print a model bundle's header as JSON: parts, sizes, provenance, the dream C was evolved in.
    Inspect(inspect::InspectArgs),
    /// The playground: reality, what V sees and the dream side by side; drive, or let C drive.
    Play(play::PlayArgs),
    /// The paper's story in the playground, scene by scene (PageDown / PageUp), or your own tour.
    Tour(play::TourArgs),
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
        Some(Command::ExportFlow(args)) => flow::export_flow_cmd(args),
        Some(Command::TrainAutoencoder(args)) => flow::train_autoencoder_cmd(args),
        Some(Command::TrainDecoder(args)) => flow::train_decoder_cmd(args),
        Some(Command::EncodeLatents(args)) => flow::encode_latents_cmd(args),
        Some(Command::TrainFlow(args)) => flow::train_flow_cmd(args),
        Some(Command::TrainController(args)) => train_controller::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Inspect(args)) => inspect::run(args),
        Some(Command::Play(args)) => play::run(args),
        Some(Command::Tour(args)) => play::run_tour(args),
        None => play::run(play::PlayArgs::default()),
    }
}

/// clap value parser for env names, so a typo lists the valid names.
pub(crate) fn parse_env(s: &str) -> Result<EnvKind, String> {
    s.parse()
        .map_err(|e: crate::envs::UnknownEnv| e.to_string())
}

/// The backend flag every command that runs a model takes.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendArg {
    /// auto (wgpu on a hardware GPU, else flex), wgpu (or gpu) or flex (or cpu);
    /// DREAMPLAY_BACKEND works too.
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<BackendRequest>,
}

impl BackendArg {
    /// Picks the backend, printing why when it fell back.
    pub fn select(&self) -> Selection {
        let selection = backend::select_requested(self.backend);
        if let Some(note) = &selection.note {
            eprintln!("note: {note}");
        }
        selection
    }
}

/// Where a stage reads its rollouts and keeps its run, each defaulting under the env's name.
#[derive(Debug, Clone, Args)]
pub struct RunDirs {
    /// The rollouts from `dreamplay collect` (default: data/<env>).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The run folder the stages share (default: runs/<env>).
    #[arg(long)]
    pub run: Option<PathBuf>,
}

impl RunDirs {
    /// `--data`, else `data/<env>`, where `collect` puts an env's rollouts unless told.
    pub fn data_dir(&self, env: EnvKind) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join(env.name()))
    }

    /// `--run`, else `runs/<env>`.
    pub fn run_dir(&self, env: EnvKind) -> PathBuf {
        self.run
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(env.name()))
    }
}

/// The step limit of an episode (or a rollout), whose default depends on the env.
#[derive(Debug, Clone, Args)]
pub struct MaxStepsArg {
    /// Steps per episode at most (default: 1000 for car-racing, 2100 for take-cover).
    #[arg(long)]
    pub max_steps: Option<u32>,
}

impl MaxStepsArg {
    /// `--max-steps`, else the env's limit.
    pub fn for_env(&self, env: EnvKind) -> u32 {
        self.max_steps
            .unwrap_or_else(|| crate::train::collect::default_max_steps(env))
    }
}

/// clap value parser for the backend: the names `DREAMPLAY_BACKEND` takes.
fn parse_backend(s: &str) -> Result<BackendRequest, String> {
    s.parse()
}
