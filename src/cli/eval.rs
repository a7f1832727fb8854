//! `dreamplay eval`: C's score in the real env and, optionally, in the dream at several
//! temperatures (the paper's table of dream score vs real score).

use std::path::{Path, PathBuf};

use clap::Args;

use super::parse_env;
use crate::envs::EnvKind;
use crate::model::backend;
use crate::model::bundle::default_path;
use crate::agent::AgentKind;
use crate::train::eval::{EvalConfig, ScoreSummary, evaluate};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// The world-model bundle (default: models/<env>/world-model.bin; a run's is runs/<env>/world-model.bin).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Real episodes (and dreams per tau).
    #[arg(long, default_value_t = 100)]
    pub episodes: usize,
    /// Episode i's env seed derives from (seed, i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps per episode at most (default: 1000 for car-racing, 2100 for take-cover).
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Also score in the dream at these temperatures, e.g. 0.1,1.0,1.15.
    #[arg(long, value_delimiter = ',')]
    pub dream_tau: Vec<f32>,
    /// How M's done ends a dream: sample (with M's probability) or threshold (the paper's logit > 0).
    #[arg(long, value_enum, default_value = "sample")]
    pub dream_done: crate::model::mdrnn::DoneRule,
    /// Multiply M's done odds in those dreams by this (1: as trained).
    #[arg(long, default_value_t = 1.0)]
    pub done_odds: f32,
    /// Fork each dream from its real episode after N steps of the data policy, M having read
    /// them, instead of from the first frame and a zero state (the paper's start). The N steps
    /// count towards the dream's return.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dream_context: usize,
    /// Also print M's done probability along the baseline's real episodes (M reading the real
    /// frames and actions), by how far each step is from the death: whether M sees deaths coming,
    /// and the hazard it puts on steps far from any.
    #[arg(long)]
    pub done_along_reality: bool,
    /// Evaluate the uniform-random policy instead of C (the baseline; needs no model for the real env).
    #[arg(long)]
    pub random: bool,
    /// Evaluate the still policy (the zero action every step) instead of C: in the dream, it shows
    /// whether M kills an agent that never dodges.
    #[arg(long, conflicts_with = "random")]
    pub still: bool,
    /// Evaluate a blind sweep instead of C: the first action value at -1 for N steps, then +1 for
    /// N, and so on. In Take Cover, compare its dream score with its real one (80: about 770).
    #[arg(long, value_name = "N", conflicts_with_all = ["random", "still"])]
    pub sweep: Option<u32>,
    /// Write per-episode returns here: episode,tau,return,steps,done (tau empty for the real env).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// auto (wgpu on a hardware GPU, else flex), wgpu or flex; DREAMPLAY_BACKEND works too.
    #[arg(long)]
    pub backend: Option<String>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let env = args.env;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| default_path(Path::new("models"), env));
    let mut config = EvalConfig::new(env, model);
    config.episodes = args.episodes;
    config.seed = args.seed;
    if let Some(max_steps) = args.max_steps {
        config.max_steps = max_steps;
    }
    config.dream_taus = args.dream_tau.clone();
    config.done_rule = args.dream_done;
    config.done_odds = args.done_odds;
    config.dream_context = args.dream_context;
    config.done_along_reality = args.done_along_reality;
    config.baseline = if let Some(half) = args.sweep {
        Some(AgentKind::Sweep(half))
    } else if args.still {
        Some(AgentKind::Still)
    } else if args.random {
        Some(AgentKind::Uniform)
    } else {
        None
    };
    config.csv = args.csv.clone();
    config.validate()?;

    let selection = backend::select(args.backend.as_deref());
    if let Some(note) = &selection.note {
        eprintln!("note: {note}");
    }
    let report = crate::with_backend!(&selection.backend, |B, device| {
        evaluate::<B>(&config, &device)
    })?;

    println!(
        "{env}: {}, seed {}, up to {} steps",
        report.agent, config.seed, config.max_steps
    );
    println!(
        "real: {}",
        ScoreSummary::of(&report.real).describe("episodes")
    );
    let forked = match config.dream_context {
        0 => String::new(),
        k => format!(" (forked after {k} real steps, counted)"),
    };
    for (tau, results) in &report.dream {
        println!(
            "dream at tau {tau}{forked}: {}",
            ScoreSummary::of(results).describe("dreams")
        );
    }
    if let Some(along) = &report.done_along_reality {
        println!(
            "M's done probability along the real episodes:\n{}",
            along.describe()
        );
    }
    if let Some(csv) = &config.csv {
        println!("per-episode returns: {}", csv.display());
    }
    Ok(())
}
