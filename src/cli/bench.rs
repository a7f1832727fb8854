//! `dreamplay bench`: figures you can rerun. Timing lives here, never in tests.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::agent::{Agent, Seen, UniformRandom};
use crate::envs::{EnvKind, OBS_SIZE};

use super::{BackendArg, parse_env};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Env steps per second, producing the model's 64x64 observation every step, on one core
    /// and on all cores in parallel.
    Envs(EnvBenchArgs),
    /// The world model: V training img/s (batch 32), the dream step latency at batch 1 (one M step
    /// plus one V decode, what the app pays per frame), and batched M steps/s at batch 1,024.
    Model(ModelBenchArgs),
}

#[derive(Debug, Args)]
pub struct ModelBenchArgs {
    /// Only this env's model sizes (default: both).
    #[arg(long, value_parser = parse_env)]
    pub env: Option<EnvKind>,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Timed V training steps at batch 32.
    #[arg(long, default_value_t = 10)]
    pub train_steps: usize,
    /// Timed dream steps at batch 1.
    #[arg(long, default_value_t = 200)]
    pub dream_steps: usize,
    /// Dreams stepped together for the throughput figure.
    #[arg(long, default_value_t = 1024)]
    pub batch_dreams: usize,
}

#[derive(Debug, Args)]
pub struct EnvBenchArgs {
    /// Only this env (default: both).
    #[arg(long, value_parser = parse_env)]
    pub env: Option<EnvKind>,
    /// Seconds of stepping per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Threads for the parallel measurement (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Envs(args) => bench_envs(&args),
        BenchCommand::Model(args) => bench_model(&args),
    }
}

fn bench_envs(args: &EnvBenchArgs) -> anyhow::Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        anyhow::bail!("--seconds must be a positive number, got {}", args.seconds);
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let kinds: Vec<EnvKind> = args.env.map_or_else(|| EnvKind::ALL.to_vec(), |k| vec![k]);

    println!(
        "dreamplay bench envs: random actions, {OBS_SIZE}x{OBS_SIZE} observation every step, {:.1} s each",
        args.seconds
    );
    println!(
        "{:<12} {:>16} {:>22}",
        "env",
        "1 core steps/s",
        format!("{threads} threads steps/s")
    );
    for kind in kinds {
        let single = steps_per_second(kind, duration, 0)?;
        let parallel = parallel_steps_per_second(kind, duration, threads)?;
        println!("{:<12} {:>16.0} {:>22.0}", kind.name(), single, parallel);
    }
    Ok(())
}

fn bench_model(args: &ModelBenchArgs) -> anyhow::Result<()> {
    if args.train_steps == 0 || args.dream_steps == 0 || args.batch_dreams == 0 {
        anyhow::bail!("--train-steps, --dream-steps and --batch-dreams must be at least 1");
    }
    let selection = args.backend.select();
    let kinds: Vec<EnvKind> = args.env.map_or_else(|| EnvKind::ALL.to_vec(), |k| vec![k]);
    for env in kinds {
        let config = crate::bench::BenchConfig {
            env,
            train_steps: args.train_steps,
            dream_steps: args.dream_steps,
            batch_dreams: args.batch_dreams,
            ..crate::bench::BenchConfig::default()
        };
        println!("dreamplay bench model: {env}");
        println!("{}", crate::bench::run(&selection.backend, &config));
    }
    Ok(())
}

/// Steps random actions for `duration` on this thread, resetting at episode ends.
fn steps_per_second(kind: EnvKind, duration: Duration, seed: u64) -> anyhow::Result<f64> {
    let mut env = kind.make(seed);
    let mut policy = UniformRandom::new(env.action_space(), seed);
    let mut episode_seed = seed;
    let start = Instant::now();
    let mut steps = 0u64;
    // Check the clock every 64 steps so timing costs nothing measurable.
    while !steps.is_multiple_of(64) || start.elapsed() < duration {
        let step = env.step(&policy.act(&Seen::default()))?;
        std::hint::black_box(&step.obs);
        steps += 1;
        if step.done() {
            episode_seed += 1_000;
            env.reset(episode_seed);
        }
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn parallel_steps_per_second(
    kind: EnvKind,
    duration: Duration,
    threads: usize,
) -> anyhow::Result<f64> {
    let rates: Vec<anyhow::Result<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || steps_per_second(kind, duration, t as u64 + 1)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a benchmark thread panicked")))
            })
            .collect()
    });
    rates.into_iter().sum()
}
