//! The training pipeline end to end on tiny Take Cover data: collect, train-vae, encode,
//! train-mdrnn, train-controller and eval; resume equal to an unbroken run for V and M (at an
//! epoch boundary and after a crash mid-epoch); encode's skip and redo rules; and the errors a
//! user meets with bad input.
//!
//! # Seeds
//! train-vae and train-mdrnn seed the backend's generator from their `seed` just before they
//! build their model, so the same config starts from the same weights. That generator is one
//! per process, and every call that builds a model draws from it (loading a bundle too: it builds
//! the modules, then overwrites their weights). So each such call here holds [`init_lock`]: no
//! other test of this file draws between a training call's seed and its init.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::backend::Autodiff;
use burn::prelude::*;
use dreamplay::envs::EnvKind;
use dreamplay::model::backend::FlexBackend;
use dreamplay::model::bundle::{self, Expect, ModelSpec, Part, Precision, WorldModel};
use dreamplay::train::collect::{CollectConfig, collect};
use dreamplay::train::controller::{ControllerTrainConfig, FitnessMode, train_controller};
use dreamplay::train::encode::{EncodeSummary, Series, encode_all, vae_id};
use dreamplay::train::eval::{EvalConfig, evaluate};
use dreamplay::train::export::{ExportConfig, LatentSource, export, latent_line};
use dreamplay::train::fidelity::{
    FuturesConfig, OpenLoopConfig, futures_spread, open_loop, open_loop_csv,
};
use dreamplay::train::mdrnn::{MdrnnTrainConfig, MdrnnTrainSummary, train_mdrnn};
use dreamplay::train::rollout::list_rollouts;
use dreamplay::train::run_model_path;
use dreamplay::train::vae::{VaeTrainConfig, VaeTrainSummary, train_vae};

mod common;

use common::device;

type B = FlexBackend;
type AB = Autodiff<FlexBackend>;

const ENV: EnvKind = EnvKind::TakeCover;
/// Frames per tiny rollout at most: random Take Cover episodes last 210 +- 125 frames, so most
/// hit this cap.
const ROLLOUT_STEPS: u32 = 120;

fn scratch(name: &str) -> tempfile::TempDir {
    common::scratch("pipeline", name)
}

/// Serialises every use of the backend's global generator (see the module doc).
fn init_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `rollouts` tiny Take Cover rollouts in `dir`.
fn tiny_rollouts(dir: &Path, rollouts: usize, seed: u64) {
    let config = CollectConfig {
        max_steps: ROLLOUT_STEPS,
        min_length: 20,
        seed,
        ..CollectConfig::new(ENV, rollouts, dir)
    };
    collect(&config, &|_| {}).expect("collect tiny rollouts");
}

/// A few batches of V per epoch.
fn tiny_vae(data: &Path, run: &Path) -> VaeTrainConfig {
    VaeTrainConfig {
        epochs: 1,
        batch_size: 8,
        val_fraction: 0.25,
        frame_stride: 8,
        chunk: 2,
        seed: 3,
        ..VaeTrainConfig::new(ENV, data.to_path_buf(), run.to_path_buf())
    }
}

fn tiny_mdrnn(run: &Path) -> MdrnnTrainConfig {
    MdrnnTrainConfig {
        epochs: 1,
        batch_size: 4,
        seq_len: 20,
        seed: 5,
        ..MdrnnTrainConfig::new(ENV, run.to_path_buf())
    }
}

fn run_vae(config: &VaeTrainConfig, fresh: bool) -> anyhow::Result<VaeTrainSummary> {
    let _guard = init_lock();
    train_vae::<AB>(config, fresh, &device())
}

fn run_mdrnn(config: &MdrnnTrainConfig, fresh: bool) -> anyhow::Result<MdrnnTrainSummary> {
    let _guard = init_lock();
    train_mdrnn::<AB>(config, fresh, &device())
}

fn encode(data: &Path, run: &Path) -> anyhow::Result<EncodeSummary> {
    let _guard = init_lock();
    encode_all::<B>(&[data.to_path_buf()], run, 64, &device())
}

/// Writes a bundle holding a random V of the paper's Take Cover sizes (and nothing else) as the
/// run's model: enough to encode with and to train M on, without training V.
fn random_v_run(run: &Path, init_seed: u64) {
    let device = device();
    let spec = ModelSpec::paper(ENV);
    let mut model = WorldModel::<B>::empty(spec);
    {
        let _guard = init_lock();
        B::seed(&device, init_seed);
        model.vae = Some(spec.vae_config().init(&device));
    }
    bundle::save(&model, &run_model_path(run), Precision::F32).expect("save a random V");
}

/// The checksum of one part of a bundle (of its f32 weights, so equal checksums mean equal
/// weights to within a hash collision).
fn part_checksum(bundle_path: &Path, part: Part) -> String {
    let header = bundle::read_header(bundle_path).expect("a readable bundle");
    header
        .parts
        .iter()
        .find(|p| p.part == part)
        .unwrap_or_else(|| panic!("{} has no {part:?}", bundle_path.display()))
        .checksum
        .clone()
}

/// The values of `column` of a CSV log, on the rows that have one.
fn csv_column(path: &Path, column: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let k = header
        .iter()
        .position(|h| *h == column)
        .unwrap_or_else(|| panic!("{}: no column {column} in {header:?}", path.display()));
    lines
        .filter_map(|line| line.split(',').nth(k).filter(|v| !v.is_empty()))
        .map(|v| v.parse().expect("a number"))
        .collect()
}

/// The first column of every row of a CSV log.
fn csv_keys(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("the CSV log");
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or("").to_string())
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn tiny_pipeline_end_to_end() {
    let dir_guard = scratch("end-to-end");
    let dir = dir_guard.path().to_path_buf();
    let (data, run) = (dir.join("data"), dir.join("run"));
    tiny_rollouts(&data, 6, 1);
    let rollouts = list_rollouts(&data).unwrap().valid;
    assert_eq!(rollouts.len(), 6);
    let device = device();

    // V: two epochs.
    let v = run_vae(
        &VaeTrainConfig {
            epochs: 2,
            ..tiny_vae(&data, &run)
        },
        false,
    )
    .expect("train-vae");
    assert_eq!(v.epochs, 2);
    assert!(v.skipped_files.is_empty(), "{:?}", v.skipped_files);
    let vae_dir = run.join("vae");
    let recon = csv_column(&vae_dir.join("loss.csv"), "recon");
    assert_eq!(recon.len() as u64, v.steps, "one training row per step");
    assert!(
        recon.len() >= 10,
        "a few batches per epoch: {}",
        recon.len()
    );
    let (first, last) = (mean(&recon[..3]), mean(&recon[recon.len() - 3..]));
    assert!(
        last < 0.9 * first,
        "V's training reconstruction loss went down: first rows {first:.1}, last rows {last:.1} ({recon:?})"
    );
    let val_recon = v.val_recon.expect("held-out reconstruction reported");
    assert!(val_recon.is_finite() && val_recon > 0.0, "{val_recon}");
    assert_eq!(
        csv_column(&vae_dir.join("loss.csv"), "val_recon").len(),
        2,
        "one held-out row per epoch"
    );
    assert!(v.val_frames > 0);
    for png in ["reconstructions.png", "loss.png"] {
        let bytes = std::fs::read(vae_dir.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is a PNG");
    }

    // Encode: one series per rollout, mu [T, 64].
    let e = encode(&data, &run).expect("encode");
    assert_eq!((e.encoded, e.skipped, e.failed.len()), (6, 0, 0));
    let id = vae_id(&run_model_path(&run)).unwrap();
    for info in &rollouts {
        let path = run.join("series").join(info.path.file_name().unwrap());
        let s = Series::read(&path).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(s.mu.dim(), (info.len, 64), "{}", path.display());
        assert_eq!(s.logvar.dim(), (info.len, 64));
        assert_eq!(s.actions.dim(), (info.len, 1));
        assert_eq!(s.vae_id, id);
    }
    assert_eq!(std::fs::read_dir(run.join("series")).unwrap().count(), 6);

    // M: two epochs.
    let m = run_mdrnn(
        &MdrnnTrainConfig {
            epochs: 2,
            ..tiny_mdrnn(&run)
        },
        false,
    )
    .expect("train-mdrnn");
    assert_eq!(m.epochs, 2);
    assert!(m.val.is_some(), "an episode is held out");
    // The MDN loss cannot go down here: a V this young has posteriors of sigma ~ 1, so each
    // re-sampled z is mostly noise and M starts at the floor, the entropy of N(0, 1) per dim,
    // 0.5 ln(2 pi e) = 1.419. It must stay near that floor; done and reward are learnable.
    let log = run.join("mdrnn").join("loss.csv");
    let (mdn, done, reward) = (
        csv_column(&log, "mdn"),
        csv_column(&log, "done"),
        csv_column(&log, "reward"),
    );
    assert_eq!(mdn.len() as u64, m.steps);
    assert!(mdn.len() >= 10, "{}", mdn.len());
    assert!(
        mdn.iter().all(|v| (1.2..1.7).contains(v)),
        "MDN loss near the floor: {mdn:?}"
    );
    let total: Vec<f64> = (0..mdn.len())
        .map(|i| mdn[i] + done[i] + reward[i])
        .collect();
    let (first, last) = (mean(&total[..3]), mean(&total[total.len() - 3..]));
    assert!(
        last < first - 0.2,
        "M's training loss went down: first rows {first:.4}, last rows {last:.4} (mdn {mdn:?}, done {done:?}, reward {reward:?})"
    );
    assert!(run.join("mdrnn").join("loss.png").is_file());

    // C: two generations in the dream.
    let c_config = ControllerTrainConfig {
        fitness: FitnessMode::Dream,
        population: 4,
        trials: 2,
        generations: 2,
        max_steps: 30,
        eval_every: 0,
        eval_episodes: 1,
        seed: 9,
        ..ControllerTrainConfig::new(ENV, run.clone(), data.clone())
    };
    let c = {
        let _guard = init_lock();
        train_controller::<B>(&c_config, &device).expect("train-controller")
    };
    assert_eq!((c.start_generation, c.generation), (0, 2));
    let best = c.best_fitness.expect("a best candidate");
    assert!(
        (1.0..=30.0).contains(&best),
        "steps survived in the dream: {best}"
    );

    // The run's bundle: V, M and C, each with its provenance.
    let model = {
        let _guard = init_lock();
        bundle::load::<B>(&run_model_path(&run), &Expect::env(ENV), &device)
            .expect("the run's bundle loads")
    };
    assert!(model.vae.is_some() && model.mdrnn.is_some() && model.controller.is_some());
    let p = &model.provenance;
    let (pv, pm, pc) = (
        p.vae.as_ref().expect("V's provenance"),
        p.mdrnn.as_ref().expect("M's provenance"),
        p.controller.as_ref().expect("C's provenance"),
    );
    assert_eq!(
        (pv.epochs, pm.epochs, pc.epochs),
        (Some(2), Some(2), Some(2))
    );
    assert!(
        pv.final_losses.contains_key("val_recon"),
        "{:?}",
        pv.final_losses
    );
    assert!(pm.final_losses.contains_key("mdn"), "{:?}", pm.final_losses);
    assert_eq!(vae_id(&run_model_path(&run)).unwrap(), id, "M and C kept V");

    // Eval in the real env.
    let eval = EvalConfig {
        episodes: 3,
        max_steps: 40,
        seed: 4,
        ..EvalConfig::new(ENV, run_model_path(&run))
    };
    let report = {
        let _guard = init_lock();
        evaluate::<B>(&eval, &device).expect("eval")
    };
    assert_eq!(report.real.len(), 3);
    for r in &report.real {
        assert!(r.ret.is_finite() && r.steps >= 1 && r.steps <= 40, "{r:?}");
    }

    // The dream against reality: open-loop, it drifts from reality as the horizon grows, and
    // the same seed gives the same figures.
    let open_config = OpenLoopConfig {
        episodes: 3,
        max_steps: 80,
        seed: 4,
        ..OpenLoopConfig::new(ENV, run_model_path(&run))
    };
    let open = |config: &OpenLoopConfig| {
        let _guard = init_lock();
        open_loop::<B>(config, &device).expect("open-loop")
    };
    let first = open(&open_config);
    assert_eq!(first, open(&open_config), "deterministic under its seed");
    let horizons: Vec<u32> = first.rows.iter().map(|r| r.horizon).collect();
    assert_eq!(
        horizons,
        [0, 1, 5, 10, 30],
        "no 80-step episode reaches 100"
    );
    let at = |h: u32| first.rows.iter().find(|r| r.horizon == h).expect("a row");
    let (near, far) = (at(1), at(30));
    assert!(
        far.pixel_error > near.pixel_error || far.z_error > near.z_error,
        "open-loop error at 30 steps {far:?} exceeds 1 step's {near:?}"
    );
    for r in &first.rows {
        assert!(
            (0.0..=1.0).contains(&r.pixel_error) && r.sharpness > 0.0,
            "{r:?}"
        );
    }
    assert_eq!(at(0).z_error, Some(0.0), "horizon 0 is the fork itself");
    let csv = open_loop_csv(&[&first]);
    assert!(
        csv.starts_with("model,horizon,pixel_error,z_error,sharpness\nmdn-rnn,0,"),
        "{csv}"
    );

    // Futures from one fork spread wider when M is hot.
    let futures = {
        let _guard = init_lock();
        futures_spread::<B>(
            &FuturesConfig {
                taus: vec![0.1, 1.3],
                episodes: 2,
                max_steps: 80,
                seed: 4,
                ..FuturesConfig::new(ENV, run_model_path(&run), 8, 10)
            },
            &device,
        )
        .expect("futures")
    };
    let (cold, hot) = (futures.rows[0], futures.rows[1]);
    assert!(futures.forks > 0);
    assert!(
        hot.spread > cold.spread,
        "futures at tau 1.3 spread {} over tau 0.1's {}",
        hot.spread,
        cold.spread
    );
    assert_export_ships_latent_statistics(&dir, &data, &run, &rollouts);
}

/// `export` of the tiny run: V's latent statistics and map from the run's series, else from the
/// rollouts encoded now, else none (and says so); V, M and C unchanged, the same bytes each time.
fn assert_export_ships_latent_statistics(
    dir: &Path,
    data: &Path,
    run: &Path,
    rollouts: &[dreamplay::train::rollout::RolloutInfo],
) {
    let device = device();
    let export_to = |out: &str, data: Option<&Path>| {
        let config = ExportConfig {
            env: ENV,
            run_dir: run.to_path_buf(),
            data_dir: data.map(Path::to_path_buf),
            models_dir: dir.join(out),
            eval_episodes: 0,
            dream_taus: vec![],
            map_points: 50,
            seed: 0,
        };
        let _guard = init_lock();
        let summary = export::<B>(&config, &device).expect("export");
        let model = bundle::load::<B>(&summary.bundle, &Expect::env(ENV), &device)
            .expect("the exported bundle loads");
        (summary, model)
    };
    let frames: usize = rollouts.iter().map(|r| r.len).sum();

    let (first, model) = export_to("models", Some(data));
    assert_eq!(
        first.latent,
        LatentSource::Series {
            dir: run.join("series"),
            episodes: 6
        }
    );
    let stats = model.latent_stats.as_ref().expect("latent statistics");
    assert_eq!(stats.frames, frames as u64);
    assert_eq!(stats.dims.len(), 64);
    for d in &stats.dims {
        assert!(d.p1 <= d.mean && d.mean <= d.p99 && d.sd >= 0.0, "{d:?}");
    }
    let map = model.latent_map.as_ref().expect("a latent map");
    assert_eq!(map.points.len(), 50);
    let [a, b] = map.variance_explained;
    assert!(a >= b && b > 0.0 && a + b <= 1.0, "{a} {b}");
    for p in &map.points {
        assert_eq!(map.project(&p.z), p.xy);
    }
    for part in [Part::Vae, Part::Mdrnn, Part::Controller] {
        let run_part = bundle::read_header(&run_model_path(run))
            .unwrap()
            .parts
            .into_iter()
            .find(|p| p.part == part)
            .unwrap();
        let exported = bundle::read_header(&first.bundle)
            .unwrap()
            .parts
            .into_iter()
            .find(|p| p.part == part)
            .unwrap();
        assert_eq!(run_part.shapes, exported.shapes, "{part}");
    }
    let card = std::fs::read_to_string(&first.card).unwrap();
    assert!(card.contains("**Latent statistics**: V's mu on"), "{card}");

    // The same export again: the same bytes.
    let (again, _) = export_to("models-again", Some(data));
    assert_eq!(
        std::fs::read(&first.bundle).unwrap(),
        std::fs::read(&again.bundle).unwrap()
    );

    // Without series, V encodes the rollouts: the same frames, the same z to rounding.
    std::fs::rename(run.join("series"), dir.join("series-aside")).unwrap();
    let (encoded, from_rollouts) = export_to("models-encoded", Some(data));
    assert_eq!(
        encoded.latent,
        LatentSource::Rollouts {
            dir: data.to_path_buf(),
            episodes: 6
        }
    );
    let other = from_rollouts.latent_stats.as_ref().unwrap();
    assert_eq!(other.frames, stats.frames);
    for (x, y) in other.dims.iter().zip(&stats.dims) {
        assert!((x.mean - y.mean).abs() < 1e-4 && (x.sd - y.sd).abs() < 1e-4);
    }

    // No data at all: the bundle ships without them, and the line says how to add them.
    let (bare, model) = export_to("models-bare", None);
    assert_eq!(bare.latent, LatentSource::Missing);
    assert!(model.latent_stats.is_none() && model.latent_map.is_none());
    let line = latent_line(ENV, &bare);
    assert!(
        line.contains("without latent statistics") && line.contains("dreamplay encode"),
        "{line}"
    );
    assert!(
        !bundle::read_header(&bare.bundle)
            .unwrap()
            .has(Part::LatentMap)
    );
    // The latent parts change no weight: V, M and C are the same bytes with and without them.
    let weights = |path: &Path| -> Vec<String> {
        bundle::read_header(path)
            .unwrap()
            .parts
            .into_iter()
            .filter(|p| p.part != Part::LatentMap)
            .map(|p| p.checksum)
            .collect()
    };
    assert_eq!(weights(&bare.bundle), weights(&first.bundle));
    assert_eq!(weights(&bare.bundle).len(), 3);
    std::fs::rename(dir.join("series-aside"), run.join("series")).unwrap();
}

/// One stage trained three ways with the same config (so from the same initial weights): in folder A
/// for one epoch then resumed to two; in B for two epochs straight; in C for two epochs with a
/// crash mid-epoch (a checkpoint that cannot be written: a file is in the way of its folder),
/// then resumed.
struct ResumeRuns {
    /// Owns the scratch folder of all three runs, so it outlives them.
    _scratch: tempfile::TempDir,
    /// The stage's folder in a run: `vae` or `mdrnn`.
    stage: &'static str,
    a: PathBuf,
    b: PathBuf,
    c: PathBuf,
}

impl ResumeRuns {
    fn log(&self, run: &Path) -> PathBuf {
        run.join(self.stage).join("loss.csv")
    }
}

/// The summaries' view of a run: (epochs, steps, resumed from step).
type Progress = (usize, u64, Option<u64>);

/// Runs A, B and C of [`ResumeRuns`] with `train(run, epochs, checkpoint_every)`,
/// checking what each session reports. C checkpoints every `every` steps; the checkpoint after
/// step `2 * every` is blocked.
fn resume_runs(
    scratch: tempfile::TempDir,
    stage: &'static str,
    every: usize,
    train: impl Fn(&Path, usize, usize) -> anyhow::Result<Progress>,
) -> ResumeRuns {
    let dir = scratch.path();
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let (epochs, epoch_steps, resumed) = train(&a, 1, 1000).expect("A: epoch 1");
    assert_eq!((epochs, resumed), (1, None));
    assert!(
        epoch_steps > 2 * every as u64,
        "an epoch of several batches: {epoch_steps}"
    );
    let two = train(&a, 2, 1000).expect("A: resume to epoch 2");
    assert_eq!(two, (2, 2 * epoch_steps, Some(epoch_steps)));
    let straight = train(&b, 2, 1000).expect("B: two epochs");
    assert_eq!(straight, (2, 2 * epoch_steps, None));

    let crash_at = 2 * every as u64;
    let blocker = c.join(stage).join(format!("checkpoint-{crash_at:08}"));
    std::fs::create_dir_all(c.join(stage)).unwrap();
    std::fs::write(&blocker, b"in the way").unwrap();
    let err = train(&c, 2, every).expect_err("the blocked checkpoint fails");
    assert!(
        format!("{err:#}").contains(&format!("checkpoint-{crash_at:08}")),
        "the error names the checkpoint: {err:#}"
    );
    std::fs::remove_file(&blocker).unwrap();
    let resumed = train(&c, 2, every).expect("C: resume after the crash");
    assert_eq!(
        resumed,
        (2, 2 * epoch_steps, Some(every as u64)),
        "C resumes from the last checkpoint written before the crash"
    );
    ResumeRuns {
        _scratch: scratch,
        stage,
        a,
        b,
        c,
    }
}

fn vae_resume_runs(name: &str) -> ResumeRuns {
    let dir_guard = scratch(name);
    let dir = dir_guard.path().to_path_buf();
    let data = dir.join("data");
    tiny_rollouts(&data, 4, 2);
    resume_runs(dir_guard, "vae", 2, |run, epochs, checkpoint_every| {
        let config = VaeTrainConfig {
            epochs,
            checkpoint_every,
            ..tiny_vae(&data, run)
        };
        run_vae(&config, false).map(|s| (s.epochs, s.steps, s.resumed_from_step))
    })
}

/// M's three runs share one random V and its series, copied into each run folder.
fn mdrnn_resume_runs(name: &str) -> ResumeRuns {
    let dir_guard = scratch(name);
    let dir = dir_guard.path().to_path_buf();
    let (data, base) = (dir.join("data"), dir.join("base"));
    tiny_rollouts(&data, 4, 3);
    random_v_run(&base, 21);
    encode(&data, &base).expect("encode with the random V");
    for run in ["a", "b", "c"].map(|r| dir.join(r)) {
        std::fs::create_dir_all(&run).unwrap();
        std::fs::copy(run_model_path(&base), run_model_path(&run)).unwrap();
        copy_dir(&base.join("series"), &run.join("series"));
    }
    resume_runs(dir_guard, "mdrnn", 1, |run, epochs, checkpoint_every| {
        let config = MdrnnTrainConfig {
            epochs,
            checkpoint_every,
            ..tiny_mdrnn(run)
        };
        run_mdrnn(&config, false).map(|s| (s.epochs, s.steps, s.resumed_from_step))
    })
}

/// The resumed runs equal the unbroken one: the loss log byte for byte, and the weights.
fn assert_resume_matches_an_unbroken_run(runs: &ResumeRuns, part: Part) {
    let csv = |run: &Path| std::fs::read_to_string(runs.log(run)).unwrap();
    assert_eq!(
        csv(&runs.a),
        csv(&runs.b),
        "loss.csv: resumed at the epoch boundary vs unbroken"
    );
    let weights = |run: &Path| part_checksum(&run_model_path(run), part);
    assert_eq!(
        weights(&runs.a),
        weights(&runs.b),
        "{part:?}: resumed at the epoch boundary vs unbroken"
    );
    assert_eq!(
        weights(&runs.c),
        weights(&runs.b),
        "{part:?}: resumed after a crash mid-epoch vs unbroken"
    );
}

/// The crashed-and-resumed run logs every step once, as the unbroken run does.
fn assert_crash_resume_logs_every_step_once(runs: &ResumeRuns) {
    assert_eq!(
        csv_keys(&runs.log(&runs.c)),
        csv_keys(&runs.log(&runs.b)),
        "the step column after a crash and a resume"
    );
}

#[test]
fn vae_resume_matches_an_unbroken_run() {
    let runs = vae_resume_runs("vae-resume");
    assert_resume_matches_an_unbroken_run(&runs, Part::Vae);
}

#[test]
fn vae_resume_after_a_crash_logs_every_step_once() {
    let runs = vae_resume_runs("vae-crash-log");
    assert_crash_resume_logs_every_step_once(&runs);
}

#[test]
fn mdrnn_resume_matches_an_unbroken_run() {
    let runs = mdrnn_resume_runs("mdrnn-resume");
    assert_resume_matches_an_unbroken_run(&runs, Part::Mdrnn);
    let v = |run: &Path| part_checksum(&run_model_path(run), Part::Vae);
    assert_eq!(v(&runs.a), v(&runs.b), "train-mdrnn keeps V");
}

#[test]
fn mdrnn_resume_after_a_crash_logs_every_step_once() {
    let runs = mdrnn_resume_runs("mdrnn-crash-log");
    assert_crash_resume_logs_every_step_once(&runs);
}

#[test]
fn bad_input_is_skipped_or_refused_with_a_clear_message() {
    let dir_guard = scratch("bad-input");
    let dir = dir_guard.path().to_path_buf();
    let (data, run) = (dir.join("data"), dir.join("run"));
    tiny_rollouts(&data, 3, 4);
    let valid_frames: usize = list_rollouts(&data)
        .unwrap()
        .valid
        .iter()
        .map(|r| r.len)
        .sum();
    let whole = std::fs::read(data.join("rollout_00000.npz")).unwrap();
    std::fs::write(data.join("rollout_00099.npz"), &whole[..whole.len() / 2]).unwrap();
    let config = VaeTrainConfig {
        val_fraction: 0.0,
        frame_stride: 16,
        ..tiny_vae(&data, &run)
    };

    // A truncated rollout is skipped and named; training runs on the others.
    let s = run_vae(&config, false).expect("trains past a truncated rollout");
    assert_eq!(s.skipped_files.len(), 1, "{:?}", s.skipped_files);
    assert!(
        s.skipped_files[0].contains("rollout_00099.npz"),
        "{:?}",
        s.skipped_files
    );
    assert_eq!(s.train_frames, valid_frames);
    assert!(s.steps >= 1);
    assert!(run_model_path(&run).is_file());

    // A different batch size does not resume the run silently.
    let err = run_vae(
        &VaeTrainConfig {
            batch_size: 4,
            ..config.clone()
        },
        false,
    )
    .expect_err("a different batch size");
    let message = format!("{err:#}");
    assert!(
        message.contains("--fresh") && message.contains("batch 8"),
        "{message}"
    );

    // No rollouts at all.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = run_vae(
        &VaeTrainConfig {
            data_dir: empty.clone(),
            ..config.clone()
        },
        true,
    )
    .expect_err("no rollouts");
    let message = format!("{err:#}");
    assert!(message.contains(&empty.display().to_string()), "{message}");
    assert!(message.contains("no valid rollouts"), "{message}");

    // A batch larger than the data.
    let err = run_vae(
        &VaeTrainConfig {
            batch_size: 10_000,
            ..config.clone()
        },
        true,
    )
    .expect_err("a batch larger than the data");
    let message = format!("{err:#}");
    assert!(
        message.contains("a batch of 10000 is larger than the training data")
            && message.contains("--batch"),
        "{message}"
    );

    // M without series: no series folder, then an empty one.
    let err = run_mdrnn(&tiny_mdrnn(&run), false).expect_err("no series folder");
    assert!(format!("{err:#}").contains("dreamplay encode"), "{err:#}");
    std::fs::create_dir_all(run.join("series")).unwrap();
    let err = run_mdrnn(&tiny_mdrnn(&run), false).expect_err("no series");
    assert!(format!("{err:#}").contains("dreamplay encode"), "{err:#}");

    // encode with a bundle that has no V.
    let no_v = dir.join("no-v");
    bundle::save(
        &WorldModel::<B>::empty(ModelSpec::paper(ENV)),
        &run_model_path(&no_v),
        Precision::F32,
    )
    .unwrap();
    let err = encode(&data, &no_v).expect_err("no V in the bundle");
    let message = format!("{err:#}");
    assert!(message.contains("train-vae"), "{message}");
    assert!(!no_v.join("series").exists(), "nothing written");
}

#[test]
fn encode_before_train_vae_says_to_run_train_vae() {
    let dir_guard = scratch("encode-no-bundle");
    let dir = dir_guard.path().to_path_buf();
    let data = dir.join("data");
    tiny_rollouts(&data, 1, 5);
    let err = encode(&data, &dir.join("run")).expect_err("no bundle");
    let message = format!("{err:#}");
    assert!(message.contains("train-vae"), "{message}");
}

#[test]
fn encode_puts_several_rollout_folders_into_one_run() {
    let dir_guard = scratch("encode-folders");
    let dir = dir_guard.path().to_path_buf();
    let (held, long, run) = (dir.join("held"), dir.join("long"), dir.join("run"));
    tiny_rollouts(&held, 2, 6);
    tiny_rollouts(&long, 3, 7);
    random_v_run(&run, 21);
    let summary = {
        let _guard = init_lock();
        encode_all::<B>(&[held.clone(), long.clone()], &run, 64, &device()).expect("encode")
    };
    assert_eq!((summary.encoded, summary.skipped), (5, 0));
    let mut names: Vec<String> = std::fs::read_dir(run.join("series"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "long_rollout_00000.npz",
            "long_rollout_00001.npz",
            "long_rollout_00002.npz",
            "rollout_00000.npz",
            "rollout_00001.npz",
        ]
    );
    // Each series holds its own rollout: the long folder's first is not the held folder's first.
    let series = |name: &str| Series::read(&run.join("series").join(name)).unwrap();
    assert_ne!(
        series("rollout_00000.npz").mu,
        series("long_rollout_00000.npz").mu
    );
    let mdrnn = run_mdrnn(&tiny_mdrnn(&run), true).expect("train-mdrnn on both folders");
    assert_eq!(mdrnn.episodes + mdrnn.val_episodes, 5);
}

#[test]
fn encode_skips_done_series_and_redoes_stale_ones() {
    let dir_guard = scratch("encode");
    let dir = dir_guard.path().to_path_buf();
    let (data, run) = (dir.join("data"), dir.join("run"));
    tiny_rollouts(&data, 3, 6);
    let config = VaeTrainConfig {
        val_fraction: 0.0,
        frame_stride: 16,
        ..tiny_vae(&data, &run)
    };
    run_vae(&config, false).expect("train-vae");
    let series = run.join("series");
    let snapshot = || -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(&series)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        files.sort();
        files
    };

    let first = encode(&data, &run).expect("encode");
    assert_eq!((first.encoded, first.skipped), (3, 0));
    assert!(first.frames > 0);
    let before = snapshot();
    assert_eq!(before.len(), 3);

    let again = encode(&data, &run).expect("encode again");
    assert_eq!((again.encoded, again.skipped, again.frames), (0, 3, 0));
    assert_eq!(snapshot(), before, "series made by this V are left alone");

    // A damaged series is redone, alone.
    let (damaged, bytes) = &before[1];
    std::fs::write(damaged, &bytes[..bytes.len() / 2]).unwrap();
    let repaired = encode(&data, &run).expect("encode after damage");
    assert_eq!((repaired.encoded, repaired.skipped), (1, 2));
    assert_eq!(snapshot(), before, "the redone series equals the lost one");

    // A new V (--fresh, another seed) makes every series stale.
    let old_id = vae_id(&run_model_path(&run)).unwrap();
    run_vae(&VaeTrainConfig { seed: 4, ..config }, true).expect("train-vae --fresh");
    let new_id = vae_id(&run_model_path(&run)).unwrap();
    assert_ne!(old_id, new_id, "a new V");
    let redone = encode(&data, &run).expect("encode with the new V");
    assert_eq!((redone.encoded, redone.skipped), (3, 0));
    for (path, _) in snapshot() {
        assert_eq!(
            Series::read(&path).unwrap().vae_id,
            new_id,
            "{}",
            path.display()
        );
    }
}

#[test]
fn sprite_weight_weights_the_masked_pixels_and_needs_masked_rollouts() {
    use dreamplay::model::vae::tensor_to_frames;
    use dreamplay::train::rollout::Rollout;
    use dreamplay::train::vae::{frames_u8_to_tensor, sprite_error};
    let dir_guard = scratch("sprite-weight");
    let dir = dir_guard.path().to_path_buf();
    let data = dir.join("data");
    tiny_rollouts(&data, 4, 6);
    let files = list_rollouts(&data).unwrap().valid;
    assert!(
        files.iter().all(|f| f.has_sprite_mask),
        "Take Cover rollouts carry masks"
    );
    // The same rollouts with a mask that marks nothing, and with none at all.
    let rewrite = |name: &str, mask: Option<fn(&Rollout) -> ndarray::Array3<u8>>| {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        for file in &files {
            let r = Rollout::read(&file.path).unwrap();
            let mut copy = Rollout::new(
                r.obs().clone(),
                r.actions().clone(),
                r.rewards().clone(),
                r.dones().clone(),
                r.env_seed(),
            )
            .unwrap();
            if let Some(mask) = mask {
                copy = copy.with_sprite_mask(mask(&r)).unwrap();
            }
            copy.write(&out.join(file.path.file_name().unwrap()))
                .unwrap();
        }
        out
    };
    let blank = rewrite(
        "blank-masks",
        Some(|r| ndarray::Array3::zeros((r.len(), 64, 64))),
    );
    let unmasked = rewrite("no-masks", None);
    let train = |data: &Path, weight: f32, name: &str| {
        let run = dir.join(name);
        let config = VaeTrainConfig {
            val_fraction: 0.0,
            frame_stride: 4,
            sprite_weight: weight,
            ..tiny_vae(data, &run)
        };
        run_vae(&config, false).map(|_| run)
    };
    let v = |run: &Path| part_checksum(&run_model_path(run), Part::Vae);
    let paper = train(&data, 0.0, "paper").expect("train-vae");
    let weighted = train(&data, 50.0, "weighted").expect("train-vae --sprite-weight");
    let blank_weighted = train(&blank, 50.0, "blank").expect("train-vae on blank masks");
    // Only the marked pixels count more: with nothing marked the weight changes no bit.
    assert_ne!(v(&paper), v(&weighted), "the weight changed nothing");
    assert_eq!(
        v(&paper),
        v(&blank_weighted),
        "unmarked pixels were weighted"
    );

    // sprite_error is the squared error summed over the marked pixels, per frame.
    let first = Rollout::read(&files[0].path).unwrap();
    let picks: Vec<usize> = (0..first.len()).step_by(7).collect();
    let frames: Vec<Vec<u8>> = picks
        .iter()
        .map(|&t| first.frame(t).unwrap().iter().copied().collect())
        .collect();
    let masks: Vec<Vec<u8>> = picks
        .iter()
        .map(|&t| first.sprite_mask(t).unwrap().iter().copied().collect())
        .collect();
    let _guard = init_lock();
    let device = device();
    let vae = bundle::load_vae::<B>(&run_model_path(&weighted), &Expect::default(), &device)
        .expect("V saved");
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let recon =
        tensor_to_frames(vae.decode(vae.encode(frames_u8_to_tensor::<B>(&refs, &device)).0));
    let mut by_hand = 0.0f64;
    for ((frame, mask), rec) in frames.iter().zip(&masks).zip(&recon) {
        for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m == 1) {
            let px = rec.as_raw();
            for c in 0..3 {
                let d = f64::from(frame[i * 3 + c]) / 255.0 - f64::from(px[i * 3 + c]) / 255.0;
                by_hand += d * d;
            }
        }
    }
    by_hand /= frames.len() as f64;
    let measured = sprite_error(&vae, &frames, &masks, &device).expect("the frames show imps");
    // The reconstruction is rounded to bytes for the hand sum: allow a little.
    assert!(
        (measured - by_hand).abs() < 0.02 * by_hand + 0.01,
        "sprite error {measured} vs {by_hand} by hand"
    );
    let blank_masks = vec![vec![0u8; 64 * 64]; frames.len()];
    assert_eq!(sprite_error(&vae, &frames, &blank_masks, &device), None);
    drop(_guard);

    // Rollouts without masks (an older collect) are refused up front, by name.
    let err = train(&unmasked, 50.0, "refused").expect_err("no masks to weight");
    let err = format!("{err:#}");
    assert!(
        err.contains("sprite_mask") && err.contains("rollout_0000"),
        "{err}"
    );
}
