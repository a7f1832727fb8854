//! `dreamplay collect`: random-policy rollouts of a real env, one `.npz` per rollout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::agent::AgentKind;
use crate::envs::EnvKind;
use crate::train::collect::{
    CollectConfig, CollectEvent, RolloutStatus, collect, default_min_length,
};

use super::{MaxStepsArg, parse_env};

/// How often the progress bar redraws on its own, so the ETA ticks between rollouts.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// Rollouts in the data set (files rollout_00000.npz ..); existing valid ones are kept.
    #[arg(long)]
    pub rollouts: usize,
    /// Output folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Who acts (default: brownian for car-racing, held for take-cover).
    #[arg(long, value_enum)]
    pub policy: Option<AgentKind>,
    /// Master seed: rollout i's env and policy seeds derive from (seed, i) only.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: all cores); the files do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub max_steps: MaxStepsArg,
    /// Keep only episodes longer than this many frames (default: 0 for car-racing, 100 for take-cover).
    #[arg(long)]
    pub min_length: Option<u32>,
}

impl CollectArgs {
    pub fn config(&self) -> CollectConfig {
        CollectConfig {
            env: self.env,
            rollouts: self.rollouts,
            policy: self
                .policy
                .unwrap_or_else(|| AgentKind::default_for(self.env)),
            seed: self.seed,
            out_dir: self.out.clone(),
            max_steps: self.max_steps.for_env(self.env),
            min_length: self
                .min_length
                .unwrap_or_else(|| default_min_length(self.env)),
            threads: self.threads.unwrap_or(0),
        }
    }
}

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let config = args.config();
    config.validate()?;
    eprintln!(
        "collecting {} {} rollouts into {} (policy {}, seed {}, up to {} frames, longer than {})",
        config.rollouts,
        config.env,
        config.out_dir.display(),
        config.policy,
        config.seed,
        config.max_steps,
        config.min_length
    );

    // Logs and pipes get the final stats only, not bar redraws.
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(config.rollouts as u64), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} rollouts  {msg}  {elapsed_precise} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(PROGRESS_TICK);
    let frames_written = AtomicU64::new(0);
    let on_event = |event: CollectEvent<'_>| match event {
        CollectEvent::Started { .. } => bar.reset_elapsed(),
        CollectEvent::Redoing { reason, .. } => {
            // A hidden bar swallows `println`, so warnings go straight to stderr then.
            if bar.is_hidden() {
                eprintln!("redoing: {reason}");
            } else {
                bar.println(format!("redoing: {reason}"));
            }
        }
        CollectEvent::Finished(outcome) => {
            if outcome.status != RolloutStatus::Skipped {
                frames_written.fetch_add(outcome.frames as u64, Ordering::Relaxed);
            }
            let frames = frames_written.load(Ordering::Relaxed);
            let seconds = bar.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{frames} frames, {:.0} frames/s",
                frames as f64 / seconds
            ));
            bar.inc(1);
        }
    };
    let result = collect(&config, &on_event);
    bar.finish_and_clear();
    let stats = result?;

    let seconds = stats.elapsed.as_secs_f64().max(1e-3);
    println!(
        "{}: {} rollouts written, {} skipped (already valid), {} replaced (were invalid), {} too-short episodes rejected",
        config.out_dir.display(),
        stats.written,
        stats.skipped,
        stats.replaced,
        stats.rejected
    );
    println!(
        "written: {} frames, {:.1} MB in {:.1} s ({:.0} frames/s)",
        stats.frames_written,
        stats.bytes_written as f64 / 1e6,
        seconds,
        stats.frames_written as f64 / seconds
    );
    println!(
        "data set: {} rollouts, {} frames, {:.1} MB, return {:.1} +- {:.1}",
        stats.written + stats.skipped,
        stats.frames_total,
        stats.bytes_total as f64 / 1e6,
        stats.mean_return,
        stats.sd_return
    );
    Ok(())
}
