//! `dreamplay eval`: C's score in the real env and, optionally, in the dream at several
//! temperatures (the paper's table of dream score vs real score).

use std::path::{Path, PathBuf};

use clap::Args;

use super::{BackendArg, MaxStepsArg};
use crate::agent::AgentKind;
use crate::model::bundle::default_path;
use crate::train::eval::{EvalConfig, ScoreSummary, evaluate};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub config: EvalConfig,
    /// The world-model bundle (default: models/<env>/world-model.bin; a run's is runs/<env>/world-model.bin).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub max_steps: MaxStepsArg,
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
    #[command(flatten)]
    pub backend: BackendArg,
}

impl EvalArgs {
    pub fn config(&self) -> EvalConfig {
        let env = self.config.env;
        EvalConfig {
            model: self
                .model
                .clone()
                .unwrap_or_else(|| default_path(Path::new("models"), env)),
            max_steps: self.max_steps.for_env(env),
            baseline: if let Some(half) = self.sweep {
                Some(AgentKind::Sweep(half))
            } else if self.still {
                Some(AgentKind::Still)
            } else if self.random {
                Some(AgentKind::Uniform)
            } else {
                None
            },
            ..self.config.clone()
        }
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let config = args.config();
    let env = config.env;
    config.validate()?;

    let selection = args.backend.select();
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
