//! `export`: a run's bundle into `models/<env>/` as the app loads it: weights in f16, the training
//! plots beside it, the controller scored afresh from the exported file, and a model card.
//! The bundle also carries V's latent statistics and a 2D map of its latent space, computed from
//! the run's encoded series, else from the rollouts in `--data` encoded by the run's V.
//!
//! `export --add-controller RUN` ([`add_controller_from_run`]) instead puts RUN's C into the
//! shipped bundle as an extra C, beside the default one, without touching any other part's bytes,
//! and rewrites the model card's list of the Cs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;

use super::encode::{Series, encode_rollout, list_series, vae_id};
use super::eval::{EvalConfig, ScoreSummary, evaluate};
use super::progress;
use super::rollout::{Rollout, list_rollouts};
use crate::agent::AgentKind;
use crate::envs::EnvKind;
use crate::model::atlas::{DEFAULT_MAP_POINTS, LatentMap, LatentRows, LatentStats};
use crate::model::bundle::{
    self, EvolvedDream, Expect, HostTensors, NamedController, Part, Precision, TrainingInfo,
    WorldModel,
};
use crate::model::mdrnn::PAPER_DOOM_TAU;

/// What `dreamplay export` writes. Its flags: `--run` and `--data` are the CLI's, as their
/// defaults depend on --env.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportConfig {
    /// Which environment: car-racing or take-cover.
    #[arg(long)]
    pub env: EnvKind,
    #[arg(skip)]
    pub run_dir: PathBuf,
    /// The rollouts the run was trained on, described in the model card when present.
    #[arg(skip)]
    pub data_dir: Option<PathBuf>,
    /// The models folder the app loads from; the bundle goes to `<out>/<env>/world-model.bin`.
    #[arg(long = "out", visible_alias = "models", default_value = "models")]
    pub models_dir: PathBuf,
    /// Real episodes to score C and the random policy on, for the model card (0: skip).
    #[arg(long, default_value_t = 100)]
    pub eval_episodes: usize,
    /// Dream temperatures to score C at, beside the real score (the paper's table), for the
    /// model card.
    #[arg(long = "dream-tau", value_delimiter = ',', default_values_t = [1.0, PAPER_DOOM_TAU])]
    pub dream_taus: Vec<f32>,
    /// Frames of the data drawn (with --seed) onto the bundle's latent map.
    #[arg(long, default_value_t = DEFAULT_MAP_POINTS, value_parser = parse_map_points)]
    pub map_points: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_map_points(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("--map-points must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("--map-points takes a whole number: {e}")),
    }
}

/// Where the exported bundle's latent statistics and map came from.
#[derive(Debug, Clone, PartialEq)]
pub enum LatentSource {
    /// The run's series made by its V: the folder and how many episodes.
    Series { dir: PathBuf, episodes: usize },
    /// The rollouts in this folder, encoded by the run's V (there were no series of it).
    Rollouts { dir: PathBuf, episodes: usize },
    /// Kept from the run's bundle (no data here; train-vae drops them with the V they describe).
    RunBundle,
    /// No data and none in the run's bundle: the bundle ships without them.
    Missing,
}

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub bundle: PathBuf,
    pub bytes: u64,
    pub card: PathBuf,
    pub copied: Vec<PathBuf>,
    pub real: Option<ScoreSummary>,
    pub random: Option<ScoreSummary>,
    pub dream: Vec<(f32, ScoreSummary)>,
    pub latent: LatentSource,
    /// The latent statistics' frames, the map's points and the variance its axes explain.
    pub latent_stats: Option<(u64, usize, [f32; 2])>,
    /// Extra Cs the bundle held before, which the run's bundle has not: `--add-controller` adds
    /// them again if they were evolved in this M.
    pub dropped_controllers: Vec<String>,
}

/// The plots and pictures copied next to the exported bundle: (from, under the run; to).
const PICTURES: [(&str, &str); 4] = [
    ("vae/reconstructions.png", "reconstructions.png"),
    ("vae/loss.png", "vae-loss.png"),
    ("mdrnn/loss.png", "mdrnn-loss.png"),
    ("controller/fitness.png", "controller-fitness.png"),
];

/// The size of a file just written, in bytes.
pub(crate) fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read back {}", path.display()))?
        .len())
}

/// Copies each `(from, to)` picture that exists under `run_dir` to `out_dir`; the copies made.
pub(crate) fn copy_pictures(
    run_dir: &Path,
    out_dir: &Path,
    pictures: &[(&str, &str)],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut copied = Vec::new();
    for (from, to) in pictures {
        let from = run_dir.join(from);
        if from.is_file() {
            let to = out_dir.join(to);
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            copied.push(to);
        }
    }
    Ok(copied)
}

pub fn export<B: Backend>(
    config: &ExportConfig,
    device: &B::Device,
) -> anyhow::Result<ExportSummary> {
    let source = super::run_model_path(&config.run_dir);
    if config.map_points == 0 {
        bail!("--map-points must be at least 1");
    }
    let mut model: WorldModel<B> = bundle::load(&source, &Expect::env(config.env), device)?;
    if model.vae.is_none() || model.mdrnn.is_none() {
        bail!(
            "{} needs V and M to be exported; run `dreamplay train-vae` and `dreamplay train-mdrnn --env {}` first",
            source.display(),
            config.env
        );
    }
    let latent = match latent_rows(config, &source, &model, device)? {
        Some((rows, from)) => {
            model.latent_stats = Some(LatentStats::compute(&rows)?);
            model.latent_map = Some(LatentMap::compute(&rows, config.map_points, config.seed)?);
            from
        }
        None if model.latent_stats.is_some() || model.latent_map.is_some() => {
            LatentSource::RunBundle
        }
        None => LatentSource::Missing,
    };
    let out_dir = config.models_dir.join(config.env.name());
    let target = bundle::default_path(&config.models_dir, config.env);
    // The Cs added to the shipped bundle were evolved in its M, not necessarily in this run's.
    let dropped: Vec<String> = bundle::read_header(&target)
        .map(|h| h.extra_controllers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    bundle::save(&model, &target, Precision::F16)?;
    let bytes = file_size(&target)?;
    let copied = copy_pictures(&config.run_dir, &out_dir, &PICTURES)?;

    let (mut real, mut random, mut dream) = (None, None, Vec::new());
    if config.eval_episodes > 0 && model.controller.is_some() {
        let mut eval = EvalConfig::new(config.env, target.clone());
        eval.episodes = config.eval_episodes;
        eval.seed = config.seed;
        eval.dream_taus = config.dream_taus.clone();
        eval.csv = Some(out_dir.join("eval.csv"));
        let report = evaluate::<B>(&eval, device)?;
        real = Some(ScoreSummary::of(&report.real));
        dream = report
            .dream
            .iter()
            .map(|(tau, r)| (*tau, ScoreSummary::of(r)))
            .collect();
        let mut baseline = EvalConfig::new(config.env, target.clone());
        baseline.episodes = config.eval_episodes;
        baseline.seed = config.seed;
        baseline.baseline = Some(AgentKind::Uniform);
        random = Some(ScoreSummary::of(&evaluate::<B>(&baseline, device)?.real));
    }
    let card = out_dir.join("README.md");
    let summary = ExportSummary {
        dropped_controllers: dropped
            .into_iter()
            .filter(|name| !model.extra_controllers.iter().any(|c| &c.name == name))
            .collect(),
        bundle: target,
        bytes,
        card: card.clone(),
        copied,
        real,
        random,
        dream,
        latent,
        latent_stats: model.latent_stats.as_ref().map(|stats| {
            let map = model.latent_map.as_ref();
            (
                stats.frames,
                map.map_or(0, |m| m.points.len()),
                map.map_or([0.0; 2], |m| m.variance_explained),
            )
        }),
    };
    // The flow model's section is export-flow's: it measured what this export cannot.
    let mut text = model_card(config, &model, &summary);
    if let Ok(old) = std::fs::read_to_string(&card)
        && let Some(flow) = flow_section_of(&old)
    {
        text = with_flow_section(&text, flow);
    }
    std::fs::write(&card, text).with_context(|| format!("cannot write {}", card.display()))?;
    Ok(summary)
}

/// V's mu on the export's data, with each frame's step, reward and done: from the run's series
/// made by this V, else from the rollouts in `--data` encoded now; `None` when there are neither.
fn latent_rows<B: Backend>(
    config: &ExportConfig,
    source: &Path,
    model: &WorldModel<B>,
    device: &B::Device,
) -> anyhow::Result<Option<(LatentRows, LatentSource)>> {
    let z_size = model.spec.z_size;
    let mut rows = LatentRows::new(z_size);
    let series_dir = config.run_dir.join("series");
    if series_dir.is_dir() {
        let id = vae_id(source)?;
        let mut episodes = 0;
        // Series of another V (or unreadable ones) are left out: their z are not this V's.
        for path in list_series(&series_dir)? {
            let Ok(series) = Series::read(&path) else {
                continue;
            };
            if series.vae_id != id || series.z_size() != z_size {
                continue;
            }
            let mu: Vec<f32> = series.mu.iter().copied().collect();
            rows.push_episode(&mu, &series.rewards.to_vec(), &series.dones.to_vec())
                .with_context(|| format!("{}", path.display()))?;
            episodes += 1;
        }
        if episodes > 0 {
            let from = LatentSource::Series {
                dir: series_dir,
                episodes,
            };
            return Ok(Some((rows, from)));
        }
    }
    let Some(data_dir) = &config.data_dir else {
        return Ok(None);
    };
    let Ok(listing) = list_rollouts(data_dir) else {
        return Ok(None);
    };
    if listing.valid.is_empty() {
        return Ok(None);
    }
    let Some(vae) = model.vae.as_ref() else {
        return Ok(None);
    };
    let bar = progress::bar(
        listing.valid.len() as u64,
        "rollouts encoded for the latent map",
    );
    let mut episodes = 0;
    for info in &listing.valid {
        match Rollout::read(&info.path) {
            Ok(rollout) => {
                let (mu, _) = encode_rollout(vae, &rollout, 128, device);
                let mu: Vec<f32> = mu.iter().copied().collect();
                rows.push_episode(&mu, &rollout.rewards().to_vec(), &rollout.dones().to_vec())
                    .with_context(|| format!("V's encoding of {}", info.path.display()))?;
                episodes += 1;
            }
            Err(e) => progress::say(&bar, format!("skipping: {e}")),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if episodes == 0 {
        return Ok(None);
    }
    let from = LatentSource::Rollouts {
        dir: data_dir.clone(),
        episodes,
    };
    Ok(Some((rows, from)))
}

/// One line on the bundle's latent statistics and map: what they hold and where they came from,
/// or, when the bundle has none, the commands that add them.
pub fn latent_line(env: EnvKind, s: &ExportSummary) -> String {
    let from = match &s.latent {
        LatentSource::Series { dir, episodes } => {
            format!(
                "the run's series ({episodes} episodes in `{}`)",
                dir.display()
            )
        }
        LatentSource::Rollouts { dir, episodes } => {
            format!("{episodes} rollouts in `{}`, encoded by V", dir.display())
        }
        LatentSource::RunBundle => "kept from the run's bundle".into(),
        LatentSource::Missing => {
            return format!(
                "the bundle ships without latent statistics (no series of this V in the run, no rollouts in --data); `dreamplay encode --env {env}` then `dreamplay export --env {env}` adds them"
            );
        }
    };
    match s.latent_stats {
        Some((frames, points, [a, b])) => format!(
            "V's mu on {frames} frames, from {from}: each dimension's mean, sd, 1st and 99th percentiles, and a PCA map of {points} of the frames whose two axes explain {:.1}% and {:.1}% of the variance",
            100.0 * a,
            100.0 * b
        ),
        None => format!("a latent map only, {from}"),
    }
}

/// One line of the model card per trained part: its data, epochs, final losses, notes and date.
pub(crate) fn info_lines(
    out: &mut String,
    name: &str,
    info: Option<&TrainingInfo>,
    data_unit: &str,
) {
    let Some(info) = info else {
        let _ = writeln!(out, "- **{name}**: no training record.");
        return;
    };
    let _ = write!(out, "- **{name}**:");
    if let Some(n) = info.data_size {
        let _ = write!(out, " {n} {data_unit},");
    }
    if let Some(e) = info.epochs {
        let unit = if name.starts_with('C') {
            "generation"
        } else {
            "epoch"
        };
        let _ = write!(out, " {e} {unit}{},", if e == 1 { "" } else { "s" });
    }
    let losses: Vec<String> = info
        .final_losses
        .iter()
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect();
    if !losses.is_empty() {
        let _ = write!(out, " final: {};", losses.join(", "));
    }
    if let Some(notes) = &info.notes {
        let _ = write!(out, " {notes};");
    }
    if let Some(date) = &info.date {
        let _ = write!(out, " finished {date}");
    }
    out.push('\n');
}

/// The run folder as the model card names it: `runs/<its name>`, where the pipeline keeps runs.
pub(crate) fn run_folder_name(run_dir: &Path) -> String {
    run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| format!("runs/{}", n.to_string_lossy()),
    )
}

fn model_card<B: Backend>(
    config: &ExportConfig,
    model: &WorldModel<B>,
    s: &ExportSummary,
) -> String {
    let env = config.env;
    let spec = model.spec;
    let mut out = String::new();
    let _ = writeln!(out, "# {env}: the shipped world model\n");
    let _ = writeln!(
        out,
        "`world-model.bin` ({:.1} MB, V and M in f16, C in f32): V with z = {}, M with an LSTM of {} and {} gaussians per z dim, C of the paper's form. Written by `dreamplay export --env {env}` from the run folder `{}`.\n",
        s.bytes as f64 / 1e6,
        spec.z_size,
        spec.hidden_size,
        spec.n_gaussians,
        run_folder_name(&config.run_dir)
    );
    let _ = writeln!(out, "## How it was trained\n");
    if let Some(dir) = &config.data_dir
        && let Ok(listing) = super::rollout::list_rollouts(dir)
        && !listing.valid.is_empty()
    {
        let returns: Vec<f64> = listing.valid.iter().map(|r| r.total_reward).collect();
        let mean = returns.iter().sum::<f64>() / returns.len() as f64;
        let _ = writeln!(
            out,
            "- **Data**: {} rollouts, {} frames, from `dreamplay collect --env {env}` (the default random policy for this env; its mean return {mean:.1})",
            listing.valid.len(),
            listing.frames()
        );
    }
    info_lines(
        &mut out,
        "V",
        model.provenance.vae.as_ref(),
        "frames per epoch",
    );
    info_lines(
        &mut out,
        "M",
        model.provenance.mdrnn.as_ref(),
        "steps per epoch",
    );
    info_lines(
        &mut out,
        "C",
        model.provenance.controller.as_ref(),
        "episodes",
    );
    let _ = writeln!(out, "- **Latent statistics**: {}", latent_line(env, s));
    if !model.extra_controllers.is_empty() {
        out.push('\n');
        out.push_str(&controllers_section(env, &model.named_controllers()));
    }
    let _ = writeln!(out, "\n## Score\n");
    match (&s.real, &s.random) {
        (Some(real), Some(random)) => {
            let _ = writeln!(
                out,
                "Measured on the exported file, in the real env, seeds from {}:\n",
                config.seed
            );
            let _ = writeln!(out, "| agent | return |\n|---|---|");
            let _ = writeln!(out, "| C | {} |", real.describe("episodes"));
            let _ = writeln!(
                out,
                "| uniform-random policy | {} |",
                random.describe("episodes")
            );
            for (tau, d) in &s.dream {
                let _ = writeln!(
                    out,
                    "| C in the dream, tau {tau} | {} |",
                    d.describe("dreams")
                );
            }
            let taus: Vec<String> = config.dream_taus.iter().map(|t| t.to_string()).collect();
            let _ = writeln!(
                out,
                "\nReproduce: `dreamplay eval --env {env} --episodes {} --seed {}{}` (and `--random` for the baseline).",
                real.n,
                config.seed,
                if taus.is_empty() {
                    String::new()
                } else {
                    format!(" --dream-tau {}", taus.join(","))
                }
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "Not scored (no C in the bundle, or `--eval-episodes 0`)."
            );
        }
    }
    let _ = writeln!(out, "\n## Pictures\n");
    for p in &s.copied {
        if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            let _ = writeln!(out, "![{name}]({name})");
        }
    }
    let _ = writeln!(
        out,
        "\n## Departures from the paper's scale\n\nThe paper collected 10,000 rollouts and trained V for one epoch over ~10M frames, M for 20 epochs, and C with CMA-ES at population 64 x 16 trials for hundreds of generations on a cluster. This model was trained by the same pipeline on a 2-core CPU, each stage in at most about an hour and a half (the wall times are above); the numbers above are its whole budget. Rebuild it with the commands in the top-level README (\"The pipeline\")."
    );
    out
}

/// The first and last lines of the model card's list of the Cs: `--add-controller` rewrites what
/// lies between them.
const CARD_CS_START: &str = "<!-- the Cs: written by `dreamplay export --add-controller`; edits in here are overwritten -->";
const CARD_CS_END: &str = "<!-- end of the Cs -->";

/// The model card's section on the bundle's Cs: per C, its number, name and the dream it was
/// evolved in, and the command that scores them all.
pub fn controllers_section(env: EnvKind, controllers: &[NamedController]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{CARD_CS_START}");
    let _ = writeln!(
        out,
        "## The Cs
"
    );
    let _ = writeln!(
        out,
        "The bundle holds {} C{}, each evolved in its own dream. The app starts with C 0; `dreamplay eval --env {env} --controller N` scores C N, and `dreamplay eval --env {env} --table` scores every C in its dream and in reality (the paper's Table 2, [docs/table.md](../../docs/table.md)).\n",
        controllers.len(),
        if controllers.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "| # | C | evolved in | training |\n|---|---|---|---|");
    for (i, c) in controllers.iter().enumerate() {
        let dream = c.training.dream.as_ref().map_or(
            "no dream recorded".to_string(),
            super::table::describe_dream,
        );
        let mut training = Vec::new();
        if let Some(g) = c.training.epochs {
            training.push(format!("{g} generations"));
        }
        if let Some(real) = c.training.final_losses.get("real_mean") {
            training.push(format!("real re-evaluation {real:.1}"));
        }
        if let Some(notes) = &c.training.notes {
            training.push(notes.replace('|', "/"));
        }
        if let Some(date) = &c.training.date {
            training.push(format!("finished {date}"));
        }
        let _ = writeln!(
            out,
            "| {i} | {}{} | {dream} | {} |",
            c.name,
            if i == 0 { " (default)" } else { "" },
            training.join("; ")
        );
    }
    let _ = writeln!(out, "{CARD_CS_END}");
    out
}

/// The first and last lines of the model card's section on the flow model: `export-flow` writes
/// it, and `export` carries it over, as only export-flow measures the flow model.
pub const CARD_FLOW_START: &str =
    "<!-- the flow model: written by `dreamplay export-flow`; edits in here are overwritten -->";
pub const CARD_FLOW_END: &str = "<!-- end of the flow model -->";

/// Where the section between the lines `start` and `end` lies in `card`, its end's newline
/// included.
fn marked_section(card: &str, start: &str, end: &str) -> Option<std::ops::Range<usize>> {
    let from = card.find(start)?;
    let to = from + card[from..].find(end)? + end.len();
    let to = if card[to..].starts_with('\n') {
        to + 1
    } else {
        to
    };
    Some(from..to)
}

/// `card` and `section`, a blank line between them.
fn appended(card: &str, section: &str) -> String {
    if card.is_empty() || card.ends_with('\n') {
        format!("{card}\n{section}")
    } else {
        format!("{card}\n\n{section}")
    }
}

/// `card` with its list of the Cs replaced by `section`, or the list put in before "## Score"
/// (at the end when there is no such heading).
pub fn with_controllers_section(card: &str, section: &str) -> String {
    if let Some(range) = marked_section(card, CARD_CS_START, CARD_CS_END) {
        return format!("{}{section}{}", &card[..range.start], &card[range.end..]);
    }
    match card.find("\n## Score") {
        Some(at) => format!("{}\n{section}{}", &card[..at], &card[at..]),
        None => appended(card, section),
    }
}

/// The model card's section on the flow model, its marker lines included, if it has one.
pub fn flow_section_of(card: &str) -> Option<&str> {
    marked_section(card, CARD_FLOW_START, CARD_FLOW_END).map(|range| &card[range])
}

/// `card` with its section on the flow model replaced by `section`, or `section` at its end.
pub fn with_flow_section(card: &str, section: &str) -> String {
    match marked_section(card, CARD_FLOW_START, CARD_FLOW_END) {
        Some(range) => format!("{}{section}{}", &card[..range.start], &card[range.end..]),
        None => appended(card, section),
    }
}

/// What `export --add-controller` did.
#[derive(Debug, Clone)]
pub struct AddedController {
    /// The bundle it went into.
    pub bundle: PathBuf,
    /// The run it came from.
    pub run_bundle: PathBuf,
    pub name: String,
    pub dream: Option<EvolvedDream>,
    /// Every C's name in the bundle now, the default first.
    pub names: Vec<String>,
    /// The parts (V, M) in which the run's model differs from the bundle's: C was evolved with
    /// those, not the shipped ones.
    pub differing_parts: Vec<Part>,
    /// The model card, rewritten (none when the bundle's folder has none).
    pub card: Option<PathBuf>,
}

/// Puts the C of the run folder `run_dir` (the one its bundle holds: the real re-evaluation
/// winner, see `train-controller`) into `models_dir`'s bundle for `env` as an extra C named
/// `name` (default: by its dream, "C, evolved at tau 0.1"), leaving every other part's bytes
/// as they are, and rewrites the model card's list of the Cs. The run's sizes must be the
/// bundle's; a V or M that differs from the bundle's is reported, not refused.
pub fn add_controller_from_run(
    env: EnvKind,
    run_dir: &Path,
    models_dir: &Path,
    name: Option<&str>,
    replace: bool,
) -> anyhow::Result<AddedController> {
    let run_bundle = super::run_model_path(run_dir);
    let target = bundle::default_path(models_dir, env);
    let (run_header, run_cs) = bundle::load_controllers(&run_bundle, &Expect::env(env))
        .with_context(|| format!("cannot read the C of the run {}", run_dir.display()))?;
    let Some(run_c) = run_cs
        .into_iter()
        .next()
        .filter(|_| run_header.has(Part::Controller))
    else {
        bail!(
            "{} has no C: evolve one with `dreamplay train-controller --env {env} --run {}` first",
            run_bundle.display(),
            run_dir.display()
        );
    };
    let target_header = bundle::read_header(&target).with_context(|| {
        format!(
            "there is no bundle to add a C to at {}: `dreamplay export --env {env}` writes one",
            target.display()
        )
    })?;
    let (ours, theirs) = (target_header.spec, run_header.spec);
    if (ours.env, ours.z_size, ours.hidden_size, ours.action_size)
        != (
            theirs.env,
            theirs.z_size,
            theirs.hidden_size,
            theirs.action_size,
        )
    {
        bail!(
            "the C of {} does not fit {}: the run's model is {} with z {}, hidden {} and {} action values, the bundle's is {} with z {}, hidden {} and {}; a C only fits the V and M it was evolved with",
            run_bundle.display(),
            target.display(),
            theirs.env,
            theirs.z_size,
            theirs.hidden_size,
            theirs.action_size,
            ours.env,
            ours.z_size,
            ours.hidden_size,
            ours.action_size
        );
    }
    let mut differing_parts = Vec::new();
    for part in [Part::Vae, Part::Mdrnn] {
        let a = bundle::part_values(&run_bundle, part)?;
        let b = bundle::part_values(&target, part)?;
        if !same_weights(a.as_ref(), b.as_ref()) {
            differing_parts.push(part);
        }
    }
    let mut training = run_c.training;
    let from = format!("added from {}", run_dir.display());
    training.notes = Some(match training.notes.take() {
        Some(notes) => format!("{notes}; {from}"),
        None => from,
    });
    let name = name.map_or_else(
        || bundle::controller_name(training.dream.as_ref()),
        str::to_string,
    );
    let dream = training.dream;
    let named = NamedController {
        name: name.clone(),
        controller: run_c.controller,
        training,
    };
    let header = match bundle::add_controller(&target, &named, replace) {
        Err(err @ bundle::BundleError::DuplicateController { .. }) => {
            return Err(anyhow::Error::new(err).context(format!(
                "cannot add the C of {} as {name:?}: name it with --controller-name, or let it \
                 replace an extra C of that name with --replace",
                run_dir.display()
            )));
        }
        other => other?,
    };
    let (_, all) = bundle::load_controllers(&target, &Expect::env(env))?;
    let card_path = target.with_file_name("README.md");
    let card = if card_path.is_file() {
        let old = std::fs::read_to_string(&card_path)
            .with_context(|| format!("cannot read {}", card_path.display()))?;
        let new = with_controllers_section(&old, &controllers_section(env, &all));
        std::fs::write(&card_path, new)
            .with_context(|| format!("cannot write {}", card_path.display()))?;
        Some(card_path)
    } else {
        None
    };
    Ok(AddedController {
        bundle: target,
        run_bundle,
        name,
        dream,
        names: header.controller_names(),
        differing_parts,
        card,
    })
}

/// Whether two stored parts hold the same weights, each value compared at the coarser of the two
/// precisions (a run's f32 M and its f16 export are the same M).
fn same_weights(
    a: Option<&(Precision, HostTensors)>,
    b: Option<&(Precision, HostTensors)>,
) -> bool {
    let (Some((pa, ta)), Some((pb, tb))) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    let coarse = *pa == Precision::F16 || *pb == Precision::F16;
    let round = |v: f32| {
        if coarse {
            half::f16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    ta.len() == tb.len()
        && ta.iter().zip(tb).all(|((sa, va), (sb, vb))| {
            sa == sb
                && va.len() == vb.len()
                && va
                    .iter()
                    .zip(vb)
                    .all(|(x, y)| round(*x).to_bits() == round(*y).to_bits())
        })
}
