//! The paper's Table 2, live: every C of a bundle scored in the dream it was evolved in and in
//! reality (`dreamplay eval --table`, and the playground's experiment).
//!
//! The paper evolved one Take Cover C in M's dream at each temperature tau and scored each in that
//! dream and in the real game. A cold dream is cheated: its C lives long there and dies soon in
//! reality, so the row's dream / real ratio is well above 1; at tau 1.15 the two scores meet. A
//! bundle ships one C per dream ([`crate::model::bundle::NamedController`], each with the dream
//! its training record names); this module scores each there and in reality.
//!
//! # What a row measures
//! - **Dream**: `episodes` dreams at the C's own tau, done rule, done odds and real context, as
//!   `dreamplay eval --controller NAME --dream-tau T --dream-done R --done-odds K
//!   --dream-context N` runs them (the same starts and generator, so the same numbers).
//! - **Real**: `episodes` real episodes, every C's in one batch, on the seeds `eval` uses: every C
//!   meets the same episodes.
//!
//! A C with no recorded dream is scored in the env's default one ([`default_dream`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, ensure};
use burn::prelude::*;

use super::eval::{
    AgentModel, DreamDraws, ScoreSummary, dream_returns_until, eval_dream_rng, eval_dream_starts,
    eval_episode_seed, load_with_controllers, run_real_episodes_until,
};
use crate::agent::Agent;
use crate::dream::{DreamBatch, DreamStart};
use crate::envs::EnvKind;
use crate::model::bundle::EvolvedDream;
use crate::model::mdrnn::{DoneRule, PAPER_DOOM_TAU};

/// Episodes per C, in the dream and in reality, unless told.
pub const TABLE_EPISODES: usize = 16;

/// The CSV's columns, in the order the printed rows have them.
pub const TABLE_CSV_HEADER: &str = "tau,dream_mean,real_mean,dream_sd,real_sd,ratio,name";

/// One row of the paper's Table 2 (Take Cover): a C evolved at `tau`, scored in that dream and in
/// the real game, mean and sd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRow {
    pub tau: f32,
    pub dream_mean: f64,
    pub dream_sd: f64,
    pub real_mean: f64,
    pub real_sd: f64,
}

/// The paper's Table 2, Take Cover (docs/table.md cites it).
pub const PAPER_TABLE: [PaperRow; 5] = [
    PaperRow {
        tau: 0.10,
        dream_mean: 2086.0,
        dream_sd: 140.0,
        real_mean: 193.0,
        real_sd: 58.0,
    },
    PaperRow {
        tau: 0.50,
        dream_mean: 2060.0,
        dream_sd: 277.0,
        real_mean: 196.0,
        real_sd: 50.0,
    },
    PaperRow {
        tau: 1.00,
        dream_mean: 1145.0,
        dream_sd: 690.0,
        real_mean: 868.0,
        real_sd: 511.0,
    },
    PaperRow {
        tau: 1.15,
        dream_mean: 918.0,
        dream_sd: 546.0,
        real_mean: 1092.0,
        real_sd: 556.0,
    },
    PaperRow {
        tau: 1.30,
        dream_mean: 732.0,
        dream_sd: 269.0,
        real_mean: 753.0,
        real_sd: 139.0,
    },
];

/// What the table runs. The defaults are [`TableConfig::new`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct TableConfig {
    pub env: EnvKind,
    /// The bundle whose Cs are scored.
    pub model: PathBuf,
    /// Dreams and real episodes per C.
    pub episodes: usize,
    /// Episode i's env seed and dream start derive from (seed, i), as in `eval`.
    pub seed: u64,
    /// Steps per episode at most (the dream's real context included).
    pub max_steps: u32,
}

impl TableConfig {
    /// [`TABLE_EPISODES`] episodes, seed 0, the env's step limit.
    pub fn new(env: EnvKind, model: PathBuf) -> Self {
        Self {
            env,
            model,
            episodes: TABLE_EPISODES,
            seed: 0,
            max_steps: crate::train::collect::default_max_steps(env),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.episodes >= 1, "--episodes must be at least 1");
        ensure!(self.max_steps >= 1, "--max-steps must be at least 1");
        Ok(())
    }
}

/// One C of the bundle, scored in its dream and in reality.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// The C's name in the bundle (index 0 of the rows is the default C).
    pub name: String,
    /// The dream it was scored in: the one it was evolved in, or [`default_dream`].
    pub dream_settings: EvolvedDream,
    /// Whether the bundle records that dream (false: the env's default dream stood in).
    pub recorded: bool,
    /// Its returns in that dream (Take Cover: steps survived, the real context's included).
    pub dream: ScoreSummary,
    /// Its returns in the real env.
    pub real: ScoreSummary,
}

impl TableRow {
    /// The temperature of its dream.
    pub fn tau(&self) -> f32 {
        self.dream_settings.tau
    }

    /// Mean dream score over mean real score: well above 1, the dream was cheated.
    pub fn ratio(&self) -> f64 {
        self.dream.mean / self.real.mean
    }

    /// The row's numbers as the table prints them: tau, dream mean, real mean, dream sd, real sd,
    /// ratio (the name follows them).
    pub fn numbers(&self) -> String {
        format!(
            "{:>5.2} {:>10.1} {:>9.1} {:>8.1} {:>7.1} {:>6.2}",
            self.tau(),
            self.dream.mean,
            self.real.mean,
            self.dream.sd,
            self.real.sd,
            self.ratio()
        )
    }
}

/// The dream a C with no record is scored in: the env's default tau (Take Cover: the paper's
/// 1.15; CarRacing: 1), M's own done odds, done drawn, from the first frame.
pub fn default_dream(env: EnvKind) -> EvolvedDream {
    EvolvedDream {
        tau: match env {
            EnvKind::CarRacing => 1.0,
            EnvKind::TakeCover => PAPER_DOOM_TAU,
        },
        done_odds: 1.0,
        done_rule: DoneRule::default(),
        context_steps: 0,
    }
}

/// A dream's settings in words: `tau 0.10, done threshold, odds x1, forked after 10 real steps`.
pub fn describe_dream(dream: &EvolvedDream) -> String {
    let rule = match dream.done_rule {
        DoneRule::Threshold => "threshold",
        DoneRule::Sample => "drawn",
    };
    let forked = match dream.context_steps {
        0 => "from the first frame".to_string(),
        k => format!("forked after {k} real steps"),
    };
    format!(
        "tau {:.2}, done {rule}, odds x{}, {forked}",
        dream.tau, dream.done_odds
    )
}

/// Scores every C of `config.model` in its own dream and in reality (see the module doc).
/// `progress(done, total)` is called as episodes finish (dreams a C at a time); setting `cancel`
/// stops the run within a step, with [`super::eval::Cancelled`]. Deterministic under
/// `config.seed`.
pub fn paper_table<B: Backend>(
    config: &TableConfig,
    device: &B::Device,
    progress: &dyn Fn(usize, usize),
    cancel: &AtomicBool,
) -> anyhow::Result<Vec<TableRow>> {
    config.validate()?;
    let env = config.env;
    let (vae, rnn, controllers) = load_with_controllers::<B>(env, &config.model, "score", device)?;
    ensure!(
        !controllers.is_empty(),
        "{} has no C to score: train one with `dreamplay train-controller --env {env}`",
        config.model.display()
    );
    let n = config.episodes;
    let total = 2 * n * controllers.len();
    let mut done = 0;
    progress(done, total);
    let seeds: Vec<u64> = (0..n as u64)
        .map(|i| eval_episode_seed(config.seed, i))
        .collect();

    // The dreams, a C at a time: each has its own tau, done rule and odds.
    let mut starts_by_context: Vec<(usize, Vec<DreamStart>)> = Vec::new();
    let mut dreams = Vec::with_capacity(controllers.len());
    for named in &controllers {
        let settings = named.training.dream.unwrap_or_else(|| default_dream(env));
        let context = settings.context_steps as usize;
        ensure!(
            (context as u64) < u64::from(config.max_steps),
            "{:?} was evolved in dreams forked after {context} real steps, which leave no dream \
             steps under --max-steps {}",
            named.name,
            config.max_steps
        );
        if !starts_by_context.iter().any(|(k, _)| *k == context) {
            let starts = eval_dream_starts(env, &vae, &seeds, context, device)
                .with_context(|| format!("the dreams' starts for {:?}", named.name))?;
            starts_by_context.push((context, starts));
        }
        let starts = starts_by_context
            .iter()
            .find_map(|(k, s)| (*k == context).then_some(s))
            .expect("inserted above");
        let mut batch = DreamBatch::new(vae.clone(), rnn.clone(), n, device);
        batch.set_done_rule(settings.done_rule);
        batch.set_done_odds(settings.done_odds);
        let mut agents: Vec<Box<dyn Agent + '_>> = (0..n)
            .map(|_| Box::new(&named.controller) as Box<dyn Agent>)
            .collect();
        let mut rng = eval_dream_rng(config.seed, settings.tau);
        let results = dream_returns_until(
            &mut batch,
            env,
            &mut agents,
            starts,
            settings.tau,
            config.max_steps,
            DreamDraws::Shared(&mut rng),
            cancel,
        )
        .with_context(|| format!("{:?} in its dream", named.name))?;
        done += n;
        progress(done, total);
        dreams.push((settings, ScoreSummary::of(&results)));
    }

    // Reality: every C's episodes in one batch, on the same seeds.
    let agent = AgentModel {
        env,
        vae: &vae,
        rnn: &rnn,
        device,
    };
    let refs: Vec<_> = controllers
        .iter()
        .flat_map(|c| std::iter::repeat_n(&c.controller, n))
        .collect();
    let all_seeds: Vec<u64> = (0..controllers.len())
        .flat_map(|_| seeds.iter().copied())
        .collect();
    let real = run_real_episodes_until(
        &agent,
        &refs,
        &all_seeds,
        config.max_steps,
        &mut |_, _| {
            done += 1;
            progress(done, total);
        },
        cancel,
    )?;

    Ok(controllers
        .into_iter()
        .zip(dreams)
        .zip(real.chunks(n))
        .map(|((named, (settings, dream)), real)| TableRow {
            recorded: named.training.dream.is_some(),
            name: named.name,
            dream_settings: settings,
            dream,
            real: ScoreSummary::of(real),
        })
        .collect())
}

/// The table as printed: a header line, then per C its numbers and its name, each row starting
/// with three plain numbers (tau, dream mean, real mean).
pub fn format_table(rows: &[TableRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5} {:>10} {:>9} {:>8} {:>7} {:>6} name",
        "tau", "dream_mean", "real_mean", "dream_sd", "real_sd", "ratio"
    );
    for row in rows {
        let _ = writeln!(out, "{} {}", row.numbers(), row.name);
    }
    out
}

/// The paper's Table 2 for reference, each line starting with "paper" so that it never reads as
/// one of the bundle's rows.
pub fn format_paper_table() -> String {
    let mut out = String::from(
        "The paper's Table 2 (Take Cover: a C evolved in the dream at each tau, mean +- sd):\n",
    );
    for row in PAPER_TABLE {
        let _ = writeln!(
            out,
            "paper  tau {:.2}: dream {:>4} +- {:>3}, real {:>4} +- {:>3}, ratio {:.2}",
            row.tau,
            row.dream_mean,
            row.dream_sd,
            row.real_mean,
            row.real_sd,
            row.dream_mean / row.real_mean
        );
    }
    out
}

/// Writes the rows as CSV under [`TABLE_CSV_HEADER`]; the name is quoted (it holds a comma).
pub fn write_table_csv(path: &Path, rows: &[TableRow]) -> anyhow::Result<()> {
    let mut out = format!("{TABLE_CSV_HEADER}\n");
    for row in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},\"{}\"",
            row.tau(),
            row.dream.mean,
            row.real.mean,
            row.dream.sd,
            row.real.sd,
            row.ratio(),
            row.name.replace('"', "\"\"")
        );
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder of {}", path.display()))?;
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}
