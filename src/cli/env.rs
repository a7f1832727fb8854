//! `dreamplay env`: run episodes, trace steps from stdin, record GIFs.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::agent::{AgentKind, Seen};
use crate::envs::{Env, EnvKind};
use crate::record::GifRecorder;

use super::parse_env;

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Run episodes with a policy and print each return and length.
    Run(RunArgs),
    /// Read one action per line from stdin (CSV `0.1,1,0` or JSON `[0.1,1,0]`) and print one JSON
    /// line per step: reward, terminated, truncated and the physical state.
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// Who acts.
    #[arg(long, value_enum, default_value = "uniform")]
    pub policy: AgentKind,
    /// How many episodes; episode i is reset with seed + i.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub episodes: u32,
    /// Seed of the first episode (track, imps) and of the policy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Record the first episode to this GIF.
    #[arg(long)]
    pub gif: Option<PathBuf>,
    /// Also write the first episode's frames as numbered PNGs into this folder.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Side of the recorded frames in pixels (the scene is re-rendered at this size).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=2048))]
    pub size: u32,
    /// Record every n-th step, to keep GIFs small.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub every: u32,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Which environment: car-racing or take-cover.
    #[arg(long, value_parser = parse_env)]
    pub env: EnvKind,
    /// Seed for reset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: EnvCommand) -> anyhow::Result<()> {
    match cmd {
        EnvCommand::Run(args) => run_episodes(&args),
        EnvCommand::Trace(args) => trace(&args),
    }
}

fn run_episodes(args: &RunArgs) -> anyhow::Result<()> {
    let mut env = args.env.make(args.seed);
    let mut policy = args.policy.build(args.env, args.seed);
    let mut gif = match &args.gif {
        Some(path) => Some(GifRecorder::create(
            path,
            f64::from(args.env.steps_per_second()) / f64::from(args.every),
        )?),
        None => None,
    };
    if let Some(dir) = &args.frames {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let mut returns = Vec::with_capacity(args.episodes as usize);
    for episode in 0..args.episodes {
        let seed = args.seed + u64::from(episode);
        env.reset(seed);
        let recording = episode == 0 && (gif.is_some() || args.frames.is_some());
        let mut total = 0.0f64;
        let mut obs = env.observation();
        let (terminated, length) = loop {
            if recording && env.elapsed_steps().is_multiple_of(args.every) {
                record_frame(env.as_ref(), args, gif.as_mut())?;
            }
            let step = env.step(&policy.act(&Seen::frame(&obs)))?;
            total += f64::from(step.reward);
            if step.done() {
                break (step.terminated, env.elapsed_steps());
            }
            obs = step.obs;
        };
        let end = if terminated {
            "terminated"
        } else {
            "truncated"
        };
        println!("episode {episode} seed {seed}: return {total:.1}, length {length} ({end})");
        returns.push(total);
    }

    let (mean, sd) = mean_sd(&returns);
    println!(
        "{} {} episodes: return {mean:.1} +- {sd:.1}",
        args.env,
        returns.len()
    );
    if let Some(gif) = gif {
        let path = gif.path().to_path_buf();
        let frames = gif.finish()?;
        println!("wrote {} ({frames} frames)", path.display());
    }
    Ok(())
}

fn record_frame(
    env: &dyn Env,
    args: &RunArgs,
    gif: Option<&mut GifRecorder>,
) -> anyhow::Result<()> {
    let frame = env.render(args.size, args.size);
    if let Some(gif) = gif {
        gif.push(&frame)?;
    }
    if let Some(dir) = &args.frames {
        let path = dir.join(format!("{:05}.png", env.elapsed_steps()));
        frame
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Mean and population standard deviation, the paper's "mean +- sd".
pub(crate) fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn trace(args: &TraceArgs) -> anyhow::Result<()> {
    let mut env = args.env.make(args.seed);
    env.reset(args.seed);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let start = serde_json::json!({ "step": 0, "reset": args.seed, "state": env.state_json() });
    writeln!(out, "{start}")?;

    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line_number = index + 1;
        let line = line.context("cannot read stdin")?;
        let Some(action) = parse_action_line(&line).with_context(|| {
            format!("stdin line {line_number}: cannot read an action from {line:?}")
        })?
        else {
            continue;
        };
        let step = env
            .step(&action)
            .with_context(|| format!("stdin line {line_number}: action rejected"))?;
        let record = serde_json::json!({
            "step": env.elapsed_steps(),
            "action": action,
            "reward": step.reward,
            "terminated": step.terminated,
            "truncated": step.truncated,
            "state": env.state_json(),
        });
        writeln!(out, "{record}")?;
        if step.done() {
            out.flush()?;
            eprintln!(
                "episode ended at step {} ({}); later input is ignored",
                env.elapsed_steps(),
                if step.terminated {
                    "terminated"
                } else {
                    "truncated"
                }
            );
            break;
        }
    }
    Ok(())
}

/// One action from a trace line: `0.1, 1, 0`, `[0.1, 1, 0]` or `{"action": [0.1, 1, 0]}`.
/// Blank lines and lines starting with `#` give `None`.
pub(crate) fn parse_action_line(line: &str) -> anyhow::Result<Option<Vec<f32>>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.starts_with('[') || line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).context("malformed JSON")?;
        let array = match &value {
            serde_json::Value::Object(map) => {
                map.get("action").context("JSON object has no \"action\"")?
            }
            other => other,
        };
        let numbers = array.as_array().context("the action is not a JSON array")?;
        let action = numbers
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .context("an action value is not a number")
            })
            .collect::<anyhow::Result<Vec<f32>>>()?;
        return Ok(Some(action));
    }
    let action = line
        .split(',')
        .map(|field| {
            let field = field.trim();
            field
                .parse::<f32>()
                .with_context(|| format!("{field:?} is not a number"))
        })
        .collect::<anyhow::Result<Vec<f32>>>()?;
    if action.is_empty() {
        bail!("empty action");
    }
    Ok(Some(action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_parse_in_every_documented_form() {
        let expected = Some(vec![0.5, 1.0, 0.0]);
        assert_eq!(parse_action_line("0.5, 1, 0").unwrap(), expected);
        assert_eq!(parse_action_line("[0.5,1,0]").unwrap(), expected);
        assert_eq!(
            parse_action_line(r#"{"action":[0.5,1,0]}"#).unwrap(),
            expected
        );
        assert_eq!(parse_action_line("   ").unwrap(), None);
        assert_eq!(parse_action_line("# comment").unwrap(), None);
    }

    #[test]
    fn malformed_trace_lines_are_errors() {
        for bad in [
            "0.5,,1",
            "abc",
            "[0.5, \"x\"]",
            "{\"act\": [1]}",
            "[1, 2",
            "{\"action\": 3}",
        ] {
            assert!(
                parse_action_line(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn mean_sd_matches_hand_computation() {
        let (mean, sd) = mean_sd(&[1.0, 3.0]);
        assert_eq!(mean, 2.0);
        assert_eq!(sd, 1.0);
    }
}
