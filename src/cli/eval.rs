//! `dreamplay eval`: C's score in the real env and, optionally, in the dream at several
//! temperatures; with `--table`, every C of the bundle in the dream it was evolved in and in
//! reality (the paper's Table 2, `docs/table.md`); or, with `--open-loop` or `--futures`, how
//! faithful the dream is to reality (`docs/fidelity.md`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use clap::Args;

use super::{BackendArg, MaxStepsArg};
use crate::agent::AgentKind;
use crate::model::bundle::default_path;
use crate::train::eval::{EvalConfig, ScoreSummary, evaluate};
use crate::train::fidelity::{
    self, FUTURES_EPISODES, FuturesConfig, OPEN_LOOP_EPISODES, OpenLoopConfig,
};
use crate::train::table::{
    self, TABLE_EPISODES, TableConfig, describe_dream, format_paper_table, format_table,
};

/// Flags that score C and mean nothing to the fidelity measurements, which play the data policy
/// and never end a dream on M's done.
const SCORING_ONLY: [&str; 7] = [
    "random",
    "still",
    "sweep",
    "done_along_reality",
    "dream_context",
    "done_rule",
    "done_odds",
];

/// Real episodes to score C in unless told.
const SCORE_EPISODES: usize = 100;

/// Flags that `--table` sets per C from the bundle, or that pick another measurement.
const NOT_WITH_TABLE: [&str; 10] = [
    "random",
    "still",
    "sweep",
    "done_along_reality",
    "dream_context",
    "done_rule",
    "done_odds",
    "dream_taus",
    "controller",
    "open_loop",
];

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
    /// Every C of the bundle, each in the dream it was evolved in (its tau, done rule, done odds
    /// and real context) and in reality: the paper's Table 2. Rows: tau, dream mean, real mean,
    /// dream sd, real sd, dream / real, name; --csv writes them.
    #[arg(long, conflicts_with_all = NOT_WITH_TABLE, conflicts_with = "futures")]
    pub table: bool,
    /// Real episodes (default: 100 to score C, 16 per C and per side with --table, 20 with
    /// --open-loop, 4 with --futures).
    #[arg(long, value_name = "N")]
    pub episodes: Option<usize>,
    /// Measure the dream against reality open-loop instead of scoring C: fork a dream from the
    /// data policy's real episodes every --fork-every steps, give it the actions reality got,
    /// and compare it with reality 1, 5, 10, 30 and 100 steps on (at the one --dream-tau, 1 unless
    /// told).
    #[arg(long, conflicts_with_all = SCORING_ONLY)]
    pub open_loop: bool,
    /// Measure how far N dreams forked from the same memory of reality, with the same actions,
    /// spread apart after --horizon steps, at each --dream-tau (default: the paper's 0.1, 0.5, 1,
    /// 1.15, 1.3), instead of scoring C.
    #[arg(
        long,
        value_name = "N",
        requires = "horizon",
        conflicts_with = "open_loop",
        conflicts_with_all = SCORING_ONLY
    )]
    pub futures: Option<usize>,
    /// Steps from the fork to the futures compared (with --futures).
    #[arg(long, value_name = "H", requires = "futures")]
    pub horizon: Option<u32>,
    /// With --open-loop or --futures: fork every N real steps (default 20).
    #[arg(long, value_name = "N")]
    pub fork_every: Option<u32>,
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
            episodes: self.episodes.unwrap_or(SCORE_EPISODES),
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

    fn model_path(&self) -> PathBuf {
        let env = self.config.env;
        self.model
            .clone()
            .unwrap_or_else(|| default_path(Path::new("models"), env))
    }

    /// What `--open-loop` measures.
    pub fn open_loop_config(&self) -> anyhow::Result<OpenLoopConfig> {
        let env = self.config.env;
        let tau = match self.config.dream_taus[..] {
            [] => 1.0,
            [tau] => tau,
            ref taus => anyhow::bail!(
                "--open-loop dreams at one --dream-tau, got {} (use --futures to compare temperatures)",
                taus.len()
            ),
        };
        Ok(OpenLoopConfig {
            episodes: self.episodes.unwrap_or(OPEN_LOOP_EPISODES),
            seed: self.config.seed,
            max_steps: self.max_steps.for_env(env),
            fork_every: self.fork_every.unwrap_or(fidelity::DEFAULT_FORK_EVERY),
            tau,
            csv: self.config.csv.clone(),
            ..OpenLoopConfig::new(env, self.model_path())
        })
    }

    /// What `--table` runs.
    pub fn table_config(&self) -> TableConfig {
        let env = self.config.env;
        TableConfig {
            episodes: self.episodes.unwrap_or(TABLE_EPISODES),
            seed: self.config.seed,
            max_steps: self.max_steps.for_env(env),
            ..TableConfig::new(env, self.model_path())
        }
    }

    /// What `--futures N` measures.
    pub fn futures_config(&self, futures: usize) -> FuturesConfig {
        let env = self.config.env;
        let mut config = FuturesConfig::new(env, self.model_path(), futures, 0);
        config.horizon = self.horizon.unwrap_or(0);
        if !self.config.dream_taus.is_empty() {
            config.taus = self.config.dream_taus.clone();
        }
        config.episodes = self.episodes.unwrap_or(FUTURES_EPISODES);
        config.seed = self.config.seed;
        config.max_steps = self.max_steps.for_env(env);
        config.fork_every = self.fork_every.unwrap_or(fidelity::DEFAULT_FORK_EVERY);
        config.csv = self.config.csv.clone();
        config
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.open_loop {
        return run_open_loop(&args);
    }
    if let Some(futures) = args.futures {
        return run_futures(&args, futures);
    }
    if args.table {
        return run_table(&args);
    }
    anyhow::ensure!(
        args.fork_every.is_none(),
        "--fork-every goes with --open-loop or --futures"
    );
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

fn run_table(args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.fork_every.is_none(),
        "--fork-every goes with --open-loop or --futures"
    );
    let config = args.table_config();
    config.validate()?;
    let selection = args.backend.select();
    let bar = crate::train::progress::bar(0, "episodes");
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let never = AtomicBool::new(false);
    let rows = crate::with_backend!(&selection.backend, |B, device| {
        table::paper_table::<B>(&config, &device, &progress, &never)
    })?;
    bar.finish_and_clear();
    let env = config.env;
    println!(
        "{env}: each C of {} in the dream it was evolved in and in reality, {} episodes each, seed {}, up to {} steps",
        config.model.display(),
        config.episodes,
        config.seed,
        config.max_steps
    );
    print!("{}", format_table(&rows));
    println!();
    for row in &rows {
        let record = if row.recorded {
            "as evolved"
        } else {
            "no dream recorded: the env's default"
        };
        println!(
            "{}: dreamt at {} ({record})",
            row.name,
            describe_dream(&row.dream_settings)
        );
    }
    if env == crate::envs::EnvKind::TakeCover {
        println!();
        print!("{}", format_paper_table());
    }
    if let Some(csv) = &args.config.csv {
        table::write_table_csv(csv, &rows)?;
        println!("written: {}", csv.display());
    }
    Ok(())
}

fn run_open_loop(args: &EvalArgs) -> anyhow::Result<()> {
    let config = args.open_loop_config()?;
    config.validate()?;
    let selection = args.backend.select();
    let flow_path = crate::model::flow::file::beside(&config.model);
    let sampling = crate::dream::FlowDreamBatch::<crate::model::FlexBackend>::DEFAULT_SAMPLING;
    let (report, flow) = crate::with_backend!(&selection.backend, |B, device| {
        let report = fidelity::open_loop::<B>(&config, &device)?;
        let flow = if flow_path.is_file() {
            Some(fidelity::open_loop_flow::<B>(
                &config, &flow_path, sampling, &device,
            )?)
        } else {
            None
        };
        anyhow::Ok((report, flow))
    })?;
    let env = config.env;
    println!(
        "{env}: the dream against reality, open-loop: {} episodes of the data policy ({}, seed {}, {} real steps), \
         a dream forked every {} steps ({} forks) with reality's actions; M at tau {}",
        report.episodes,
        crate::agent::AgentKind::default_for(env).describe(),
        config.seed,
        report.real_steps,
        config.fork_every,
        report.forks,
        config.tau
    );
    match &flow {
        Some(_) => println!(
            "the flow model ({}): {} sampling steps, temperature {}",
            flow_path.display(),
            sampling.steps,
            sampling.temperature
        ),
        None => println!(
            "no flow model beside the bundle ({}); train one with `dreamplay train-autoencoder`, `encode-latents` and `train-flow`",
            flow_path.display()
        ),
    }
    println!(
        "{:>13} {:>7} {:>6} {:>11} {:>8} {:>9}",
        "model", "horizon", "forks", "pixel_error", "z_error", "sharpness"
    );
    for report in std::iter::once(&report).chain(&flow) {
        for r in &report.rows {
            let note = match (r.horizon, report.model) {
                (0, fidelity::MODEL_FAMILY) => "  (V's reconstruction of the fork's frame)",
                (0, _) => "  (the autoencoder's reconstruction)",
                _ => "",
            };
            let z_error = r.z_error.map_or("-".to_string(), |z| format!("{z:.3}"));
            println!(
                "{:>13} {:>7} {:>6} {:>11.4} {:>8} {:>9.3}{note}",
                report.model, r.horizon, r.forks, r.pixel_error, z_error, r.sharpness
            );
        }
    }
    let reports: Vec<&fidelity::OpenLoopReport> = std::iter::once(&report).chain(&flow).collect();
    fidelity::write_open_loop_csv(&config, &reports)?;
    if let Some(csv) = &config.csv {
        println!("written: {}", csv.display());
    }
    Ok(())
}

fn run_futures(args: &EvalArgs, futures: usize) -> anyhow::Result<()> {
    let config = args.futures_config(futures);
    config.validate()?;
    let selection = args.backend.select();
    let report = crate::with_backend!(&selection.backend, |B, device| {
        fidelity::futures_spread::<B>(&config, &device)
    })?;
    let env = config.env;
    println!(
        "{env}: {} dreams per fork, {} steps on with reality's actions; {} forks (every {} steps) in {} episodes of the data policy (seed {})",
        config.futures,
        config.horizon,
        report.forks,
        config.fork_every,
        report.episodes,
        config.seed
    );
    println!("{:>5} {:>8}", "tau", "spread");
    for r in &report.rows {
        println!("{:>5} {:>8.4}", r.tau, r.spread);
    }
    if let Some(csv) = &config.csv {
        println!("written: {}", csv.display());
    }
    Ok(())
}
