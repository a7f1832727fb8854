//! The flow model's stages end to end on tiny Take Cover data: train-autoencoder,
//! encode-latents, train-flow, train-decoder and export-flow; their losses fall, their files load and
//! round-trip, a resumed train-flow equals an unbroken one, and bad input is a clear error.
//!
//! Each training call holds [`init_lock`]: the stages seed the backend's one generator just before
//! they build their model (see tests/pipeline.rs).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::backend::Autodiff;
use burn::prelude::Backend;
use dreamplay::dream::{FlowDreamBatch, FlowDreamError};
use dreamplay::envs::EnvKind;
use dreamplay::model::backend::FlexBackend;
use dreamplay::model::bundle::{self, ModelSpec, Part, Precision, WorldModel};
use dreamplay::model::flow::file as flow_file;
use dreamplay::model::flow::shortcut::Sampling;
use dreamplay::train::collect::{CollectConfig, collect};
use dreamplay::train::export::{
    CARD_FLOW_END, CARD_FLOW_START, ExportConfig, export, flow_section_of, with_flow_section,
};
use dreamplay::train::fidelity::{
    HorizonRow, OpenLoopConfig, OpenLoopReport, open_loop_csv, open_loop_flow,
};
use dreamplay::train::flow::autoencoder::{AutoencoderTrainConfig, train_autoencoder};
use dreamplay::train::flow::decoder::{CRITIC_FILE, DecoderTrainConfig, train_decoder};
use dreamplay::train::flow::dynamics::{FlowTrainConfig, train_flow};
use dreamplay::train::flow::export::{ExportFlowConfig, ExportFlowSummary, FlowGoals, export_flow};
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
    let sharpness = summary.val_sharpness.expect("held-out sharpness");
    assert!(sharpness > 0.0 && sharpness.is_finite(), "{sharpness}");
    let logged = csv_column(&run.join("flow/autoencoder/loss.csv"), "val_sharpness");
    let last = logged.last().expect("the epoch's row records it");
    assert!(
        (last - sharpness).abs() < 1e-6,
        "{last} logged, {sharpness} reported"
    );
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

    // train-decoder sharpens the decoder alone: the latents and the dynamics stay the run's.
    let path = flow_model_path(&run);
    let (autoencoder_before, dynamics_before) = (
        checksum(&path, Part::Autoencoder),
        checksum(&path, Part::Dynamics),
    );
    let decoder = DecoderTrainConfig {
        epochs: 2,
        batch_size: 8,
        learning_rate: 1e-3,
        val_fraction: 0.25,
        frame_stride: 3,
        chunk: 2,
        gradient_weight: 0.05,
        seed: 3,
        ..DecoderTrainConfig::new(ENV, data.clone(), run.clone())
    };
    let tuned = {
        let _guard = init_lock();
        train_decoder::<AB>(&decoder, false, &device()).expect("train-decoder")
    };
    let gradient = csv_column(&run.join("flow/decoder/loss.csv"), "gradient");
    let (first, last) = (mean(&gradient[..3]), mean(&gradient[gradient.len() - 3..]));
    assert!(
        last < first,
        "the gradient difference fell from {first:.1} to {last:.1}"
    );
    let (before, after) = (
        tuned.before.expect("held out before"),
        tuned.after.expect("held out after"),
    );
    // The tiny autoencoder draws noise (sharper than reality); the fine-tune brings its edges
    // toward the real ones', and its reconstruction closer.
    assert!(
        (after.sharpness - 1.0).abs() < (before.sharpness - 1.0).abs(),
        "held-out sharpness {:.3} -> {:.3}",
        before.sharpness,
        after.sharpness
    );
    assert!(after.recon < before.recon, "{before:?} -> {after:?}");
    assert_ne!(checksum(&path, Part::Autoencoder), autoencoder_before);
    assert_eq!(checksum(&path, Part::Dynamics), dynamics_before);
    let again = {
        let _guard = init_lock();
        encode_latents::<B>(&data, &run, 32, &device()).unwrap()
    };
    assert_eq!(
        (again.encoded, again.skipped),
        (0, 4),
        "the encoder is unchanged, so every series is kept"
    );
    let resumed = train_decoder::<AB>(&decoder, false, &device()).unwrap();
    assert_eq!(
        (resumed.resumed_from_step, resumed.steps),
        (Some(tuned.steps), tuned.steps)
    );

    // The run's flow model holds every part, and survives f16 and back.
    let model = flow_file::load::<B>(&path, Some(ENV), &device()).expect("the run's flow model");
    assert!(model.autoencoder.is_some() && model.dynamics.is_some() && model.end_heads.is_some());
    let provenance = &model.provenance;
    assert!(provenance.autoencoder.is_some() && provenance.dynamics.is_some());
    assert!(provenance.decoder.is_some());
    let half = scratch.path().join("half/flow-model.bin");
    flow_file::save(&model, &half, Precision::F16).unwrap();
    let back = flow_file::load::<B>(&half, Some(ENV), &device()).unwrap();
    assert_eq!(back.latent_stats, model.latent_stats);
    assert!(std::fs::metadata(&half).unwrap().len() < std::fs::metadata(&path).unwrap().len());

    assert_the_flow_dream_steps_like_an_env(&path);
    assert_open_loop_reports_the_flow_model(&path);
    assert_export_flow_ships_it_beside_the_bundle(scratch.path(), &run);

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
        // A wider latent than the shipped default: every later stage takes its size from the file.
        let ae = AutoencoderTrainConfig {
            epochs: 1,
            latent_channels: 8,
            ..tiny_autoencoder(&data, &base)
        };
        train_autoencoder::<AB>(&ae, false, &device()).unwrap();
        let encoded = encode_latents::<B>(&data, &base, 32, &device()).unwrap();
        assert_eq!(encoded.stats.expect("latent statistics").mean.len(), 8);
    }
    let header = flow_file::read_header(&flow_model_path(&base)).unwrap();
    assert_eq!(header.spec.latent_channels, 8);
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

    // train-decoder with a critic: the critic's checkpoint carries it across the break.
    let decoder = |run: &Path, epochs: usize| DecoderTrainConfig {
        epochs,
        batch_size: 8,
        val_fraction: 0.25,
        frame_stride: 3,
        chunk: 2,
        adversarial_weight: 10.0,
        critic_lr: 1e-3,
        seed: 5,
        ..DecoderTrainConfig::new(ENV, data.clone(), run.to_path_buf())
    };
    let (unbroken, resumed) = (copy("critic-unbroken"), copy("critic-resumed"));
    {
        let _guard = init_lock();
        train_decoder::<AB>(&decoder(&unbroken, 2), false, &device()).unwrap();
        train_decoder::<AB>(&decoder(&resumed, 1), false, &device()).unwrap();
        let state = std::fs::read_to_string(resumed.join("flow/decoder/state.json")).unwrap();
        let checkpoint: serde_json::Value = serde_json::from_str(&state).unwrap();
        let folder = checkpoint["checkpoint"].as_str().unwrap();
        assert!(
            resumed
                .join("flow/decoder")
                .join(folder)
                .join(CRITIC_FILE)
                .is_file()
        );
        let summary = train_decoder::<AB>(&decoder(&resumed, 2), false, &device()).unwrap();
        assert!(summary.resumed_from_step.is_some());
        let (adversarial, critic) = (summary.adversarial.unwrap(), summary.critic.unwrap());
        assert!(
            adversarial.is_finite() && critic > 0.0,
            "{adversarial} {critic}"
        );
    }
    assert_eq!(
        checksum(&flow_model_path(&unbroken), Part::Autoencoder),
        checksum(&flow_model_path(&resumed), Part::Autoencoder),
        "a resumed adversarial fine-tune takes the same steps"
    );
    let log = unbroken.join("flow/decoder/loss.csv");
    assert_eq!(
        csv_column(&log, "critic").len(),
        csv_column(&log, "recon").len(),
        "every step logs the critic's loss"
    );
}

fn report(model: &'static str, rows: &[(u32, f64, f64)]) -> OpenLoopReport {
    OpenLoopReport {
        model,
        episodes: 1,
        real_steps: 100,
        forks: 5,
        rows: rows
            .iter()
            .map(|&(horizon, pixel_error, sharpness)| HorizonRow {
                horizon,
                forks: 5,
                pixel_error,
                z_error: None,
                sharpness,
            })
            .collect(),
    }
}

#[test]
fn the_flow_goals_compare_the_families_at_their_horizons() {
    let wm = report("mdn-rnn", &[(1, 0.05, 0.5), (10, 0.08, 0.4)]);
    let sharp = report("flow-matching", &[(1, 0.03, 0.9), (10, 0.06, 0.85)]);
    let goals = FlowGoals::of(&wm, &sharp);
    assert_eq!(goals.closer_at_1, Some(true));
    assert_eq!(goals.sharper_at_10, Some(true));
    // Sharper than V's blur, but short of the goal itself.
    let soft = report("flow-matching", &[(1, 0.06, 0.9), (10, 0.06, 0.7)]);
    let goals = FlowGoals::of(&wm, &soft);
    assert_eq!(goals.closer_at_1, Some(false));
    assert_eq!(goals.sharper_at_10, Some(false));
    let short = report("flow-matching", &[(1, 0.03, 0.9)]);
    assert_eq!(FlowGoals::of(&wm, &short).sharper_at_10, None);
    // Where V overdraws noise its dream scores above reality's sharpness: nearer 1 is the goal,
    // and more noise than the 2018 dream's is not sharper.
    let noisy = report("mdn-rnn", &[(1, 0.05, 1.35), (10, 0.08, 1.34)]);
    let faithful = report("flow-matching", &[(1, 0.03, 1.05), (10, 0.06, 1.04)]);
    assert_eq!(FlowGoals::of(&noisy, &faithful).sharper_at_10, Some(true));
    let noisier = report("flow-matching", &[(1, 0.03, 1.5), (10, 0.06, 1.45)]);
    assert_eq!(FlowGoals::of(&noisy, &noisier).sharper_at_10, Some(false));
}

#[test]
fn the_cards_flow_section_is_replaced_in_place_or_added_at_the_end() {
    let section =
        |body: &str| format!("{CARD_FLOW_START}\n## The flow model\n\n{body}\n{CARD_FLOW_END}\n");
    let card = "# take-cover\n\n## Score\n\nfine\n";
    assert_eq!(flow_section_of(card), None);
    let first = with_flow_section(card, &section("one"));
    assert_eq!(first, format!("{card}\n{}", section("one")));
    assert_eq!(flow_section_of(&first), Some(section("one").as_str()));
    let later = format!("{first}\n## Later\n");
    assert_eq!(
        with_flow_section(&later, &section("two")),
        later.replace("one", "two")
    );
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

    // A fan: three dreams that go on from dream 0's state, drawn apart by their own noise.
    let mut dream = FlowDreamBatch::new(model.clone(), 2, &device).unwrap();
    dream.reset_from_frames(0, &start, &[0.0; 3]).unwrap();
    let mut fan = dream.fan_out(0, 3).unwrap();
    assert_eq!(fan.batch_size(), 3);
    assert!((0..3).all(|i| fan.latent(i) == dream.latent(0)));
    assert_eq!(fan.sampling(), dream.sampling());
    let steps = fan
        .step(&[1.0; 3], &mut ChaCha8Rng::seed_from_u64(3))
        .unwrap();
    assert_ne!(steps[0].z, steps[1].z, "each future draws its own noise");
    assert!(matches!(
        dream.fan_out(2, 3),
        Err(FlowDreamError::BadIndex { .. })
    ));

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

/// `export-flow` of the tiny run into a models folder: the f16 file with every part, the
/// pictures, the card's section; once the 2018 bundle is there too, both families open-loop and
/// side by side, the same bytes under the same seed; `export` keeps the section; a run without
/// some part is refused with the stage that makes it.
fn assert_export_flow_ships_it_beside_the_bundle(scratch: &Path, run: &Path) {
    let device = device();
    let models = scratch.join("models");
    let out = models.join(ENV.name());
    let tiny = |models: &Path, run: &Path| ExportFlowConfig {
        episodes: 2,
        max_steps: Some(40),
        seed: 3,
        ..ExportFlowConfig::new(ENV, run.to_path_buf(), models.to_path_buf())
    };
    let ship = |config: &ExportFlowConfig| -> anyhow::Result<ExportFlowSummary> {
        let _guard = init_lock();
        export_flow::<B>(config, &device)
    };

    // No bundle yet: the flow model alone, not measured.
    let alone = ship(&tiny(&models, run)).expect("export-flow");
    assert_eq!(alone.model, out.join("flow-model.bin"));
    let header = flow_file::read_header(&alone.model).unwrap();
    assert!(
        header.parts.iter().all(|p| p.precision == Precision::F16),
        "{:?}",
        header.parts
    );
    let shipped = flow_file::load::<B>(&alone.model, Some(ENV), &device).expect("it loads");
    assert!(shipped.autoencoder.is_some() && shipped.dynamics.is_some());
    assert!(shipped.end_heads.is_some() && shipped.latent_stats.is_some());
    assert_eq!(
        shipped.provenance,
        flow_file::read_header(&flow_model_path(run))
            .unwrap()
            .provenance
    );
    for (from, to) in [
        ("flow/autoencoder/loss.png", "flow-autoencoder-loss.png"),
        (
            "flow/autoencoder/reconstructions.png",
            "flow-reconstructions.png",
        ),
        ("flow/decoder/loss.png", "flow-decoder-loss.png"),
        (
            "flow/decoder/reconstructions.png",
            "flow-sharpened-reconstructions.png",
        ),
        ("flow/dynamics/loss.png", "flow-loss.png"),
        ("flow/dynamics/samples.png", "flow-samples.png"),
    ] {
        let (from, to) = (run.join(from), out.join(to));
        assert_eq!(from.is_file(), to.is_file(), "{}", to.display());
        if from.is_file() {
            assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
            assert!(alone.copied.contains(&to));
        }
    }
    for shown in [
        "flow-samples.png",
        "flow-reconstructions.png",
        "flow-decoder-loss.png",
    ] {
        assert!(out.join(shown).is_file(), "{shown}");
    }
    assert!(alone.comparison.is_none());
    assert!(!out.join("open-loop.csv").exists());
    let card = std::fs::read_to_string(&alone.card).unwrap();
    let section = flow_section_of(&card)
        .expect("the card's flow section")
        .to_string();
    assert!(section.contains("## The flow model"), "{section}");
    assert!(
        section.contains("Not measured against the 2018 model"),
        "{section}"
    );
    let autoencoder_steps = shipped
        .provenance
        .autoencoder
        .as_ref()
        .unwrap()
        .notes
        .clone()
        .unwrap();
    assert!(section.contains(&autoencoder_steps), "{section}");
    assert!(section.contains("**Decoder fine-tune**"), "{section}");
    assert!(
        section.contains("2 Euler steps, temperature 1, context noise 0.05"),
        "{section}"
    );
    assert!(
        section.contains("![flow-samples.png](flow-samples.png)"),
        "{section}"
    );

    // `export` of a 2018 model (a random V and M: open-loop needs no good one) keeps the section.
    let wm_run = scratch.join("wm-run");
    random_world_model(&wm_run.join("world-model.bin"));
    let exported = {
        let config = ExportConfig {
            env: ENV,
            run_dir: wm_run,
            data_dir: None,
            models_dir: models.clone(),
            eval_episodes: 0,
            dream_taus: vec![],
            map_points: 50,
            seed: 0,
        };
        let _guard = init_lock();
        export::<B>(&config, &device).expect("export")
    };
    let card = std::fs::read_to_string(&exported.card).unwrap();
    assert!(card.contains("## Score"), "export rewrote the card: {card}");
    assert_eq!(flow_section_of(&card), Some(section.as_str()));

    // With the bundle: both families on the same episodes, and the figure.
    let measured = ship(&tiny(&models, run)).expect("export-flow beside the bundle");
    let comparison = measured
        .comparison
        .as_ref()
        .expect("measured against the bundle");
    let csv = std::fs::read_to_string(out.join("open-loop.csv")).unwrap();
    for family in ["mdn-rnn", "flow-matching"] {
        for horizon in [0, 1, 5, 10, 30] {
            assert!(
                csv.contains(&format!("\n{family},{horizon},")),
                "{family} {horizon}: {csv}"
            );
        }
    }
    assert_eq!(
        comparison.world_model.forks, comparison.flow.forks,
        "the same forks"
    );
    let figure = image::open(out.join("side-by-side.png"))
        .expect("side-by-side.png")
        .to_rgb8();
    assert!(comparison.forks_drawn >= 1);
    // Each fork's block holds 3 rows of 4 frames drawn at 3x: 12 of them per block.
    assert!(
        figure.height() >= 3 * 192 && figure.width() >= comparison.forks_drawn as u32 * 4 * 192
    );
    let card = std::fs::read_to_string(&measured.card).unwrap();
    assert!(
        card.contains("## Score"),
        "the rest of the card stays: {card}"
    );
    assert_eq!(card.matches("## The flow model").count(), 1, "{card}");
    let section = flow_section_of(&card).unwrap();
    assert!(
        section.contains("| horizon | pixel error, 2018 (V+M) | pixel error, flow |"),
        "{section}"
    );
    assert!(
        section.contains("![side-by-side.png](side-by-side.png)"),
        "{section}"
    );
    let wm1 = comparison
        .world_model
        .rows
        .iter()
        .find(|r| r.horizon == 1)
        .unwrap();
    let flow1 = comparison
        .flow
        .rows
        .iter()
        .find(|r| r.horizon == 1)
        .unwrap();
    assert_eq!(
        comparison.goals.closer_at_1,
        Some(flow1.pixel_error < wm1.pixel_error)
    );
    let verdict = if flow1.pixel_error < wm1.pixel_error {
        "holds"
    } else {
        "does not hold"
    };
    assert!(
        section.contains(&format!(
            "below the 2018 dream's: **{verdict}** ({:.4} against {:.4})",
            flow1.pixel_error, wm1.pixel_error
        )),
        "{section}"
    );

    // The same seed, the same bytes.
    let again = scratch.join("models-again");
    std::fs::create_dir_all(again.join(ENV.name())).unwrap();
    std::fs::copy(
        out.join("world-model.bin"),
        again.join(ENV.name()).join("world-model.bin"),
    )
    .unwrap();
    ship(&tiny(&again, run)).expect("export-flow again");
    for name in ["flow-model.bin", "open-loop.csv", "side-by-side.png"] {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(again.join(ENV.name()).join(name)).unwrap(),
            "{name}"
        );
    }

    // A run short of a part: refused, naming the file and the stage that makes the part.
    let partial_run = scratch.join("partial");
    let mut partial = shipped.clone();
    partial.dynamics = None;
    flow_file::save(&partial, &flow_model_path(&partial_run), Precision::F32).unwrap();
    let err = ship(&tiny(&scratch.join("models-partial"), &partial_run)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("lacks the dynamics"), "{message}");
    assert!(message.contains("dreamplay train-flow"), "{message}");
    assert!(
        message.contains(&flow_model_path(&partial_run).display().to_string()),
        "{message}"
    );
    assert!(!scratch.join("models-partial").exists(), "nothing shipped");
    partial.latent_stats = None;
    flow_file::save(&partial, &flow_model_path(&partial_run), Precision::F32).unwrap();
    let err = ship(&tiny(&scratch.join("models-partial"), &partial_run)).unwrap_err();
    assert!(
        format!("{err:#}").contains("dreamplay encode-latents"),
        "{err:#}"
    );
    let err = ship(&tiny(
        &scratch.join("models-partial"),
        &scratch.join("no-run"),
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("train-autoencoder"), "{err:#}");
}

/// A bundle holding a random V and M of the paper's Take Cover sizes.
fn random_world_model(path: &Path) {
    let device = device();
    let spec = ModelSpec::paper(ENV);
    let mut model = WorldModel::<B>::empty(spec);
    {
        let _guard = init_lock();
        B::seed(&device, 7);
        model.vae = Some(spec.vae_config().init(&device));
        model.mdrnn = Some(spec.mdrnn_config().init(&device));
    }
    bundle::save(&model, path, Precision::F32).expect("save a random V and M");
}
