//! The flow model's stages end to end on tiny Take Cover data: train-autoencoder,
//! encode-latents, train-flow; their losses fall, their files load and round-trip, a resumed
//! train-flow equals an unbroken one, and bad input is a clear error.
//!
//! Each training call holds [`init_lock`]: the stages seed the backend's one generator just before
//! they build their model (see tests/pipeline.rs).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::backend::Autodiff;
use dreamplay::dream::{FlowDreamBatch, FlowDreamError};
use dreamplay::envs::EnvKind;
use dreamplay::model::backend::FlexBackend;
use dreamplay::model::bundle::{Part, Precision};
use dreamplay::model::flow::file as flow_file;
use dreamplay::model::flow::shortcut::Sampling;
use dreamplay::train::collect::{CollectConfig, collect};
use dreamplay::train::fidelity::{OpenLoopConfig, open_loop_csv, open_loop_flow};
use dreamplay::train::flow::autoencoder::{AutoencoderTrainConfig, train_autoencoder};
use dreamplay::train::flow::dynamics::{FlowTrainConfig, train_flow};
use dreamplay::train::flow::flow_model_path;
use dreamplay::train::flow::latents::{LatentSeries, encode_latents, latents_dir};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;

use common::device;

type B = FlexBackend;
type AB = Autodiff<FlexBackend>;

const ENV: EnvKind = EnvKind::TakeCover;

fn init_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn tiny_rollouts(dir: &Path, rollouts: usize) {
    let config = CollectConfig {
        max_steps: 100,
        min_length: 20,
        seed: 11,
        ..CollectConfig::new(ENV, rollouts, dir)
    };
    collect(&config, &|_| {}).expect("collect tiny rollouts");
}

fn tiny_autoencoder(data: &Path, run: &Path) -> AutoencoderTrainConfig {
    AutoencoderTrainConfig {
        epochs: 2,
        batch_size: 8,
        val_fraction: 0.25,
        frame_stride: 3,
        chunk: 2,
        seed: 2,
        ..AutoencoderTrainConfig::new(ENV, data.to_path_buf(), run.to_path_buf())
    }
}

fn tiny_flow(run: &Path, epochs: usize) -> FlowTrainConfig {
    FlowTrainConfig {
        epochs,
        batch_size: 8,
        val_fraction: 0.25,
        checkpoint_every: 7,
        seed: 4,
        ..FlowTrainConfig::new(ENV, run.to_path_buf())
    }
}

/// The values of `column` of a CSV log, on the rows that have one.
fn csv_column(path: &Path, column: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let k = header
        .iter()
        .position(|h| *h == column)
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    lines
        .filter_map(|line| line.split(',').nth(k).filter(|v| !v.is_empty()))
        .map(|v| v.parse::<f64>().expect("a number"))
        .filter(|v| v.is_finite())
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn checksum(path: &Path, part: Part) -> String {
    let header = flow_file::read_header(path).expect("a readable flow model");
    let entry = header.parts.iter().find(|p| p.part == part);
    entry.expect("the part").checksum.clone()
}

#[test]
fn tiny_flow_pipeline_end_to_end() {
    let scratch = common::scratch("flow", "end-to-end");
    let (data, run) = (scratch.path().join("data"), scratch.path().join("run"));
    tiny_rollouts(&data, 4);

    // Nothing to encode or train on before the autoencoder: a clear error, naming the command.
    let err = encode_latents::<B>(&data, &run, 32, &device()).unwrap_err();
    assert!(format!("{err:#}").contains("train-autoencoder"), "{err:#}");

    let ae = tiny_autoencoder(&data, &run);
    let summary = {
        let _guard = init_lock();
        train_autoencoder::<AB>(&ae, false, &device()).expect("train-autoencoder")
    };
    assert!(summary.steps >= 8, "{} steps", summary.steps);
    let recon = csv_column(&run.join("flow/autoencoder/loss.csv"), "recon");
    let (first, last) = (mean(&recon[..3]), mean(&recon[recon.len() - 3..]));
    assert!(
        last < 0.7 * first,
        "recon fell from {first:.1} to {last:.1}"
    );
    assert!(summary.val_recon.is_some_and(f64::is_finite));
    assert!(run.join("flow/autoencoder/reconstructions.png").is_file());

    // train-flow needs the latents first.
    let err = {
        let _guard = init_lock();
        train_flow::<AB>(&tiny_flow(&run, 1), false, &device()).unwrap_err()
    };
    assert!(format!("{err:#}").contains("encode-latents"), "{err:#}");

    let encoded = {
        let _guard = init_lock();
        encode_latents::<B>(&data, &run, 32, &device()).expect("encode-latents")
    };
    assert_eq!(encoded.encoded, 4);
    let stats = encoded.stats.expect("latent statistics");
    assert_eq!(stats.mean.len(), 4);
    assert!(stats.std.iter().all(|s| *s > 0.0 && s.is_finite()));
    let series: Vec<_> = std::fs::read_dir(latents_dir(&run)).unwrap().collect();
    assert_eq!(series.len(), 4);
    let one = LatentSeries::read(&series[0].as_ref().unwrap().path(), Some(1024)).unwrap();
    assert!(one.len() >= 20);
    // A second run keeps what this autoencoder already made.
    let again = {
        let _guard = init_lock();
        encode_latents::<B>(&data, &run, 32, &device()).unwrap()
    };
    assert_eq!((again.encoded, again.skipped), (0, 4));

    let flow = tiny_flow(&run, 2);
    let trained = {
        let _guard = init_lock();
        train_flow::<AB>(&flow, false, &device()).expect("train-flow")
    };
    let log = run.join("flow/dynamics/loss.csv");
    let losses = csv_column(&log, "flow");
    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
    assert!(
        last < first,
        "the flow loss fell from {first:.3} to {last:.3}"
    );
    assert!(
        !csv_column(&log, "shortcut").is_empty(),
        "shortcut rows train"
    );
    let samples = trained.losses.val_sample.expect("held-out sample errors");
    assert!(samples.iter().all(|e| e.is_finite()), "{samples:?}");
    assert!(run.join("flow/dynamics/samples.png").is_file());

    // The run's flow model holds every part, and survives f16 and back.
    let path = flow_model_path(&run);
    let model = flow_file::load::<B>(&path, Some(ENV), &device()).expect("the run's flow model");
    assert!(model.autoencoder.is_some() && model.dynamics.is_some() && model.end_heads.is_some());
    assert!(model.provenance.autoencoder.is_some() && model.provenance.dynamics.is_some());
    let half = scratch.path().join("half/flow-model.bin");
    flow_file::save(&model, &half, Precision::F16).unwrap();
    let back = flow_file::load::<B>(&half, Some(ENV), &device()).unwrap();
    assert_eq!(back.latent_stats, model.latent_stats);
    assert!(std::fs::metadata(&half).unwrap().len() < std::fs::metadata(&path).unwrap().len());

    assert_the_flow_dream_steps_like_an_env(&path);
    assert_open_loop_reports_the_flow_model(&path);

    // Another env's name: an error that names the file.
    let err = flow_file::load::<B>(&path, Some(EnvKind::CarRacing), &device()).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_resumed_train_flow_equals_an_unbroken_one() {
    let scratch = common::scratch("flow", "resume");
    let data = scratch.path().join("data");
    tiny_rollouts(&data, 3);
    let base = scratch.path().join("base");
    {
        let _guard = init_lock();
        let ae = AutoencoderTrainConfig {
            epochs: 1,
            ..tiny_autoencoder(&data, &base)
        };
        train_autoencoder::<AB>(&ae, false, &device()).unwrap();
        encode_latents::<B>(&data, &base, 32, &device()).unwrap();
    }
    let copy = |name: &str| {
        let run = scratch.path().join(name);
        std::fs::create_dir_all(latents_dir(&run)).unwrap();
        std::fs::copy(flow_model_path(&base), flow_model_path(&run)).unwrap();
        for entry in std::fs::read_dir(latents_dir(&base)).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, latents_dir(&run).join(p.file_name().unwrap())).unwrap();
        }
        run
    };
    let (unbroken, resumed) = (copy("unbroken"), copy("resumed"));
    {
        let _guard = init_lock();
        train_flow::<AB>(&tiny_flow(&unbroken, 2), false, &device()).unwrap();
        train_flow::<AB>(&tiny_flow(&resumed, 1), false, &device()).unwrap();
        let summary = train_flow::<AB>(&tiny_flow(&resumed, 2), false, &device()).unwrap();
        assert!(summary.resumed_from_step.is_some());
    }
    for part in [Part::Dynamics, Part::EndHeads] {
        assert_eq!(
            checksum(&flow_model_path(&unbroken), part),
            checksum(&flow_model_path(&resumed), part),
            "{part:?}: a resumed run takes the same steps"
        );
    }
}

/// The run's flow model as a dream: reset from real frames, stepped with actions; the same seed
/// gives the same latents, and bad input is an error.
fn assert_the_flow_dream_steps_like_an_env(path: &Path) {
    let device = device();
    let model = flow_file::load::<B>(path, Some(ENV), &device).unwrap();
    let mut env = ENV.make(5);
    let mut frames = vec![env.observation()];
    for _ in 0..5 {
        frames.push(env.step(&[0.0]).unwrap().obs);
    }
    let start: Vec<_> = frames[2..].iter().collect(); // 4 frames: the whole context
    let run = |steps: usize, seed: u64| {
        let mut dream = FlowDreamBatch::new(model.clone(), 2, &device).unwrap();
        let sampling = Sampling {
            steps,
            ..FlowDreamBatch::<B>::DEFAULT_SAMPLING
        };
        dream.set_sampling(sampling).unwrap();
        dream.reset_from_frames(0, &start, &[0.0; 3]).unwrap();
        dream.reset_from_frames(1, &start[..1], &[]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut latents = Vec::new();
        for _ in 0..3 {
            let steps = dream.step(&[1.0, -1.0], &mut rng).unwrap();
            assert_eq!(steps.len(), 2);
            latents.extend(steps.into_iter().flat_map(|s| s.z));
        }
        assert!(latents.iter().all(|v| v.is_finite()));
        assert_eq!(dream.frames().len(), 2);
        assert_eq!(dream.steps(), &[3, 3]);
        latents
    };
    for steps in [1, 2, 4] {
        assert_eq!(
            run(steps, 1),
            run(steps, 1),
            "{steps} steps: the same seed, the same dream"
        );
    }
    assert_ne!(run(2, 1), run(2, 2), "another seed, another dream");

    let mut dream = FlowDreamBatch::new(model.clone(), 1, &device).unwrap();
    let bad = Sampling {
        steps: 3,
        ..FlowDreamBatch::<B>::DEFAULT_SAMPLING
    };
    assert!(matches!(
        dream.set_sampling(bad),
        Err(FlowDreamError::Sampling(_))
    ));
    assert!(matches!(
        dream.step(&[0.0, 0.0], &mut ChaCha8Rng::seed_from_u64(0)),
        Err(FlowDreamError::WrongActionLength { .. })
    ));
    assert!(matches!(
        dream.step(&[f32::NAN], &mut ChaCha8Rng::seed_from_u64(0)),
        Err(FlowDreamError::NotFinite { .. })
    ));
    let five: Vec<_> = frames.iter().collect();
    assert!(matches!(
        dream.reset_from_frames(0, &five, &[0.0; 4]),
        Err(FlowDreamError::FrameCount { .. })
    ));
    let mut partial = model;
    partial.dynamics = None;
    let err = FlowDreamBatch::new(partial, 1, &device).unwrap_err();
    assert!(err.to_string().contains("train-flow"), "{err}");
}

/// `eval --open-loop`'s flow rows: every horizon the episodes reach, no z_error, deterministic.
fn assert_open_loop_reports_the_flow_model(path: &Path) {
    let config = OpenLoopConfig {
        episodes: 2,
        max_steps: 40,
        fork_every: 15,
        ..OpenLoopConfig::new(ENV, path.with_file_name("world-model.bin"))
    };
    let sampling = FlowDreamBatch::<B>::DEFAULT_SAMPLING;
    let report = open_loop_flow::<B>(&config, path, sampling, &device()).expect("open-loop");
    assert_eq!(
        report,
        open_loop_flow::<B>(&config, path, sampling, &device()).unwrap(),
        "deterministic under its seed"
    );
    assert_eq!(report.model, "flow-matching");
    let horizons: Vec<u32> = report.rows.iter().map(|r| r.horizon).collect();
    assert_eq!(horizons, [0, 1, 5, 10, 30]);
    for r in &report.rows {
        assert!(r.z_error.is_none(), "{r:?}");
        assert!(
            (0.0..=1.0).contains(&r.pixel_error) && r.sharpness > 0.0,
            "{r:?}"
        );
    }
    let csv = open_loop_csv(&[&report]);
    assert!(csv.contains("\nflow-matching,1,"), "{csv}");
    let row = csv.lines().nth(2).unwrap();
    assert_eq!(row.split(',').nth(3), Some(""), "an empty z_error: {row}");
}
