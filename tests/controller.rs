//! `train-controller` and `eval` end to end on random-weight world models: checkpoints, resume
//! equal to a straight run, the dream's return rules, the batched real-env agent against a
//! step-by-step reference, and the errors a user meets first.

use std::path::Path;
use std::process::Command;

use burn::prelude::*;
use burn::tensor::TensorData;
use dreamplay::agent::{Agent, AgentKind, Still};
use dreamplay::dream::{DreamBatch, DreamStart};
use dreamplay::envs::{EnvKind, Frame};
use dreamplay::model::FlexBackend;
use dreamplay::model::bundle::{
    self, Expect, ModelSpec, Part, Precision, WorldModel, collect_params, load_params,
};
use dreamplay::model::controller::Controller;
use dreamplay::model::mdrnn::DoneRule;
use dreamplay::model::mdrnn::{MdnRnn, MdnRnnState};
use dreamplay::model::vae::{ConvVae, frames_to_tensor};
use dreamplay::train::collect::{CollectConfig, collect};
use dreamplay::train::controller::{
    CMAES_FILE, CONTROLLER_DIR, ControllerTrainConfig, FITNESS_CSV, StartLatents, dream_fitness,
    train_controller,
};
use dreamplay::train::eval::{
    AgentModel, DreamDraws, EvalConfig, RealPrefix, done_along_reality, dream_returns,
    eval_episode_seed, evaluate, run_baseline_episodes, run_real_episodes,
};
use dreamplay::train::run_model_path;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

mod common;

use common::device;

type B = FlexBackend;

const MAX_STEPS: u32 = 50;

fn scratch(name: &str) -> tempfile::TempDir {
    common::scratch("controller", name)
}

/// A random-weight world model of the paper's sizes, with V and M but no C (what train-mdrnn
/// leaves behind), saved as a run's bundle.
fn random_model(env: EnvKind, seed: u64) -> WorldModel<B> {
    let device = device();
    B::seed(&device, seed);
    let mut model = WorldModel::<B>::init(ModelSpec::paper(env), &device);
    model.controller = None;
    model
}

fn save_run(model: &WorldModel<B>, run: &Path) {
    bundle::save(model, &run_model_path(run), Precision::F32).expect("save the run's bundle");
}

/// Two tiny Take Cover rollouts (the dream's start frames).
fn tiny_rollouts(dir: &Path) {
    let config = CollectConfig {
        max_steps: 30,
        min_length: 5,
        ..CollectConfig::new(EnvKind::TakeCover, 2, dir)
    };
    collect(&config, &|_| {}).expect("collect tiny rollouts");
}

fn tiny_config(run: &Path, data: &Path, generations: u64) -> ControllerTrainConfig {
    ControllerTrainConfig {
        population: 4,
        trials: 2,
        generations,
        max_steps: MAX_STEPS,
        seed: 7,
        eval_every: 2,
        eval_episodes: 2,
        ..ControllerTrainConfig::new(EnvKind::TakeCover, run.to_path_buf(), data.to_path_buf())
    }
}

fn csv_rows(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join(CONTROLLER_DIR).join(FITNESS_CSV))
        .expect("fitness.csv exists");
    text.lines().skip(1).map(str::to_string).collect()
}

/// Sets M's done head to a constant logit and its reward head to a constant value (weights 0).
fn force_heads(rnn: MdnRnn<B>, done_logit: f32, reward: f32) -> MdnRnn<B> {
    let hidden = rnn.hidden_size();
    let mut tensors = collect_params(&rnn);
    // The heads are the last Linear layers with one output: done (weight [hidden, 1], bias [1])
    // then reward; nothing else in M has a single output.
    let weights: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].0 == vec![hidden, 1])
        .collect();
    let biases: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].0 == vec![1])
        .collect();
    assert_eq!(weights.len(), 2, "done and reward head weights");
    assert_eq!(biases.len(), 2, "done and reward head biases");
    for &i in &weights {
        tensors[i].1.fill(0.0);
    }
    tensors[biases[0]].1 = vec![done_logit];
    tensors[biases[1]].1 = vec![reward];
    load_params(Path::new("test"), Part::Mdrnn, rnn, tensors).expect("same shapes")
}

fn random_controller(spec: &ModelSpec, scale: f32, seed: u64) -> Controller {
    let mut c = spec.controller();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let params: Vec<f32> = (0..c.param_count())
        .map(|_| {
            let v: f32 = StandardNormal.sample(&mut rng);
            scale * v
        })
        .collect();
    c.set_params(&params).expect("right length");
    c
}

#[test]
fn two_generations_then_resume_equals_a_straight_run() {
    let dir_guard = scratch("resume");
    let dir = dir_guard.path().to_path_buf();
    let data = dir.join("data");
    tiny_rollouts(&data);
    let (run_a, run_b) = (dir.join("run-a"), dir.join("run-b"));
    let model = random_model(EnvKind::TakeCover, 11);
    save_run(&model, &run_a);
    save_run(&model, &run_b);
    let device = device();

    // Two generations.
    let summary =
        train_controller::<B>(&tiny_config(&run_a, &data, 2), &device).expect("2 generations");
    assert_eq!((summary.start_generation, summary.generation), (0, 2));
    assert!(run_a.join(CONTROLLER_DIR).join(CMAES_FILE).is_file());
    let rows = csv_rows(&run_a);
    assert_eq!(rows.len(), 2, "one row per generation: {rows:?}");
    assert!(rows[0].starts_with("1,") && rows[1].starts_with("2,"));
    assert!(
        rows[0].ends_with(','),
        "no real re-evaluation after generation 1: {}",
        rows[0]
    );
    assert!(
        !rows[1].ends_with(','),
        "eval_every 2 re-evaluates after generation 2: {}",
        rows[1]
    );
    // Take Cover's dream fitness is steps survived, so within [1, MAX_STEPS].
    for row in &rows {
        let cols: Vec<f64> = row.split(',').take(6).map(|v| v.parse().unwrap()).collect();
        assert!(
            cols[1] >= cols[2] && cols[2] >= cols[3],
            "best >= mean >= worst: {row}"
        );
        assert!(cols[3] >= 1.0 && cols[1] <= f64::from(MAX_STEPS), "{row}");
    }
    let written = bundle::load::<B>(
        &run_model_path(&run_a),
        &Expect::env(EnvKind::TakeCover),
        &device,
    )
    .expect("the bundle still loads");
    assert!(
        written.vae.is_some() && written.mdrnn.is_some(),
        "V and M are kept"
    );
    let c = written.controller.expect("train-controller wrote C");
    assert!(
        c.params().iter().any(|&v| v != 0.0),
        "C is a searched candidate, not the zero C"
    );
    let info = written.provenance.controller.expect("C's provenance");
    assert_eq!(info.epochs, Some(2));
    assert_eq!(
        info.data_size,
        Some(2 * 4 * 2),
        "generations x population x trials episodes"
    );
    assert!(info.final_losses.contains_key("fitness"));
    assert!(
        info.final_losses.contains_key("real_mean"),
        "a re-evaluation happened"
    );
    assert!(
        info.notes
            .as_deref()
            .unwrap_or("")
            .contains("tau 1.15 (done: Sample), pop 4, trials 2")
    );
    assert!(info.date.is_some());
    assert_eq!(
        info.dream,
        Some(dreamplay::model::bundle::EvolvedDream {
            tau: 1.15,
            done_odds: 1.0,
            done_rule: DoneRule::Sample,
            context_steps: 0,
        }),
        "the bundle records the dream C was evolved in, for the app"
    );

    // Resume to three: exactly one more row, the first two untouched.
    let summary =
        train_controller::<B>(&tiny_config(&run_a, &data, 3), &device).expect("resume to 3");
    assert!(summary.resumed);
    assert_eq!((summary.start_generation, summary.generation), (2, 3));
    let resumed = csv_rows(&run_a);
    assert_eq!(resumed.len(), 3);
    assert_eq!(resumed[..2], rows[..]);

    // A straight three-generation run from the same bundle writes the same CSV, byte for byte.
    train_controller::<B>(&tiny_config(&run_b, &data, 3), &device).expect("straight run");
    let csv = |run: &Path| std::fs::read(run.join(CONTROLLER_DIR).join(FITNESS_CSV)).unwrap();
    assert_eq!(
        String::from_utf8(csv(&run_a)).unwrap(),
        String::from_utf8(csv(&run_b)).unwrap()
    );

    // Asking for no more generations changes nothing; --fresh starts over.
    let before = csv(&run_a);
    let summary = train_controller::<B>(&tiny_config(&run_a, &data, 3), &device).unwrap();
    assert_eq!(summary.generations_run(), 0);
    assert_eq!(csv(&run_a), before);

    // A resume may change the trials; C's record counts the episodes each generation ran.
    let episodes = |run: &Path| {
        bundle::load::<B>(
            &run_model_path(run),
            &Expect::env(EnvKind::TakeCover),
            &device,
        )
        .expect("the bundle loads")
        .provenance
        .controller
        .expect("C's provenance")
        .data_size
    };
    let more_trials = ControllerTrainConfig {
        trials: 3,
        ..tiny_config(&run_a, &data, 4)
    };
    train_controller::<B>(&more_trials, &device).expect("resume with 3 trials");
    assert_eq!(episodes(&run_a), Some(3 * 4 * 2 + 4 * 3));

    let fresh = ControllerTrainConfig {
        fresh: true,
        ..tiny_config(&run_a, &data, 1)
    };
    train_controller::<B>(&fresh, &device).expect("fresh run");
    assert_eq!(
        csv_rows(&run_a),
        rows[..1],
        "a fresh run redoes generation 1 exactly"
    );
    assert_eq!(
        episodes(&run_a),
        Some(4 * 2),
        "a fresh run starts the count over"
    );
}

/// The paper's Take Cover spec with a random V and M (seed 5), for the dream tests.
fn take_cover_parts() -> (ModelSpec, ConvVae<B>, MdnRnn<B>) {
    let model = random_model(EnvKind::TakeCover, 5);
    let spec = model.spec;
    (spec, model.vae.unwrap(), model.mdrnn.unwrap())
}

/// Every dream starts near the same latent: mu 0.1, logvar -1 in each dim.
fn fixed_starts(z_size: usize) -> StartLatents {
    StartLatents::from_posteriors(z_size, vec![0.1; 2 * z_size], vec![-1.0; 2 * z_size]).unwrap()
}

/// With common seeds, candidates that play alike score alike: copies of one C get the same
/// fitness, where independent dreams give each copy its own luck.
#[test]
fn common_seeds_give_copies_of_one_controller_the_same_dream_fitness() {
    let device = device();
    let (spec, vae, rnn) = take_cover_parts();
    // Done with probability sigmoid(-2) = 0.12 each step: lifetimes of a few to tens of steps.
    let rnn = force_heads(rnn, -2.0, 0.0);
    let starts = fixed_starts(spec.z_size);
    let c = random_controller(&spec, 0.3, 1);
    let copies = vec![c.clone(), c.clone(), c];
    let fitness = |common_seeds: bool| {
        let mut dream = DreamBatch::new(vae.clone(), rnn.clone(), 3 * 4, &device);
        dream.set_done_rule(DoneRule::Sample);
        dream_fitness(
            &mut dream,
            EnvKind::TakeCover,
            &copies,
            4,
            &starts,
            1.15,
            200,
            7,
            0,
            common_seeds,
        )
        .expect("dream fitness")
    };
    let shared = fitness(true);
    assert!(shared.iter().all(|&f| f == shared[0]), "{shared:?}");
    let independent = fitness(false);
    assert!(
        independent.iter().any(|&f| f != independent[0]),
        "{independent:?}"
    );
}

/// The done-odds factor shifts M's done logit by its log under either rule.
#[test]
fn done_odds_scale_how_often_the_dream_ends() {
    let device = device();
    let (spec, vae, rnn) = take_cover_parts();
    let starts = fixed_starts(spec.z_size);
    let controllers = vec![random_controller(&spec, 0.3, 1)];
    let fitness = |done_logit: f32, rule: DoneRule, odds: f32| {
        let mut dream = DreamBatch::new(
            vae.clone(),
            force_heads(rnn.clone(), done_logit, 0.0),
            64,
            &device,
        );
        dream.set_done_rule(rule);
        dream.set_done_odds(odds);
        dream_fitness(
            &mut dream,
            EnvKind::TakeCover,
            &controllers,
            64,
            &starts,
            1.15,
            500,
            3,
            0,
            false,
        )
        .expect("dream fitness")[0]
    };
    // Threshold: a logit of -1 never ends the dream; odds x e^2 push it over 0 at once.
    assert_eq!(fitness(-1.0, DoneRule::Threshold, 1.0), 500.0);
    assert_eq!(fitness(-1.0, DoneRule::Threshold, 2f32.exp()), 1.0);
    // Sample: p = sigmoid(-4) = 0.018 lives ~55 steps; odds x4 make p = 0.068, ~15 steps.
    let (plain, harder) = (
        fitness(-4.0, DoneRule::Sample, 1.0),
        fitness(-4.0, DoneRule::Sample, 4.0),
    );
    assert!((35.0..80.0).contains(&plain), "{plain}");
    assert!((10.0..21.0).contains(&harder), "{harder}");
}

#[test]
fn dream_returns_follow_the_done_and_reward_heads_and_the_step_cap() {
    let device = device();
    let (spec, vae, rnn) = take_cover_parts();
    let controllers: Vec<Controller> = (0..3).map(|k| random_controller(&spec, 0.3, k)).collect();
    let fitness = |rnn: MdnRnn<B>, max_steps: u32| {
        let mut dream = DreamBatch::new(vae.clone(), rnn, 3 * 2, &device);
        dream_fitness(
            &mut dream,
            EnvKind::TakeCover,
            &controllers,
            2,
            &fixed_starts(spec.z_size),
            1.15,
            max_steps,
            3,
            0,
            false,
        )
        .expect("dream fitness")
    };
    // Done never fires: every dream survives to the cap, never beyond it.
    let never = force_heads(rnn.clone(), -10.0, 0.0);
    assert_eq!(fitness(never.clone(), 37), vec![37.0; 3]);
    // Done fires at once: each dream survives exactly one step.
    let always = force_heads(rnn.clone(), 10.0, 0.0);
    assert_eq!(fitness(always, 37), vec![1.0; 3]);
    // The random M: somewhere in between, and never above the cap.
    for f in fitness(rnn, MAX_STEPS) {
        assert!((1.0..=f64::from(MAX_STEPS)).contains(&f), "{f}");
    }

    // CarRacing sums M's reward head; a finished dream's return stays frozen.
    let car = random_model(EnvKind::CarRacing, 6);
    let car_spec = ModelSpec::paper(EnvKind::CarRacing);
    let (car_vae, car_rnn) = (car.vae.unwrap(), car.mdrnn.unwrap());
    let c = random_controller(&car_spec, 0.3, 9);
    let run = |rnn: MdnRnn<B>| {
        let mut dream = DreamBatch::new(car_vae.clone(), rnn, 2, &device);
        let mut agents: Vec<Box<dyn Agent>> = vec![Box::new(&c), Box::new(&c)];
        let z = vec![DreamStart::at(vec![0.0; car_spec.z_size]); 2];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        dream_returns(
            &mut dream,
            EnvKind::CarRacing,
            &mut agents,
            &z,
            1.0,
            20,
            DreamDraws::Shared(&mut rng),
        )
        .unwrap()
    };
    for r in run(force_heads(car_rnn.clone(), -10.0, 0.5)) {
        assert_eq!((r.steps, r.done), (20, false));
        assert!((r.ret - 10.0).abs() < 1e-4, "20 steps x 0.5: {}", r.ret);
    }
    for r in run(force_heads(car_rnn, 10.0, -2.0)) {
        assert_eq!((r.steps, r.done), (1, true));
        assert!(
            (r.ret + 2.0).abs() < 1e-4,
            "one step's reward only: {}",
            r.ret
        );
    }
}

/// A dream forked after K real steps counts them: its steps and return start at K and the
/// prefix's return, the cap is on the whole episode, and a done on the first dream step ends it
/// at K + 1. The same holds through train-controller's start latents read from rollouts.
#[test]
fn dreams_forked_after_real_context_count_it_towards_steps_and_return() {
    let device = device();
    let (spec, vae, rnn) = take_cover_parts();
    let zs = spec.z_size;
    let k = 3;
    let start = DreamStart {
        z: vec![0.1; (k + 1) * zs],
        actions: vec![0.5; k],
        prefix_return: k as f64,
    };
    let run = |rnn: MdnRnn<B>, max_steps: u32| {
        let mut dream = DreamBatch::new(vae.clone(), rnn, 2, &device);
        let mut agents: Vec<Box<dyn Agent>> =
            vec![Box::new(Still::new(1)), Box::new(Still::new(1))];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        dream_returns(
            &mut dream,
            EnvKind::TakeCover,
            &mut agents,
            &[start.clone(), start.clone()],
            1.0,
            max_steps,
            DreamDraws::Shared(&mut rng),
        )
    };
    for r in run(force_heads(rnn.clone(), -10.0, 0.0), 37).unwrap() {
        assert_eq!((r.steps, r.ret, r.done), (37, 37.0, false));
    }
    for r in run(force_heads(rnn.clone(), 10.0, 0.0), 37).unwrap() {
        assert_eq!((r.steps, r.ret, r.done), (4, 4.0, true));
    }
    let err = run(rnn.clone(), 3).unwrap_err().to_string();
    assert!(err.contains("3 steps of real context"), "{err}");

    // From rollouts: K + 1 frames and K actions per start, the return of the K real steps.
    let scratch = scratch("context");
    let data = scratch.path().join("data");
    tiny_rollouts(&data);
    let starts = StartLatents::from_rollouts(&vae, &data, EnvKind::TakeCover, k, 64, &device)
        .expect("start latents with context");
    assert_eq!((starts.len(), starts.context()), (2, k));
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let s = starts.sample(&mut rng);
    assert_eq!((s.z.len(), s.actions.len()), ((k + 1) * zs, k));
    assert_eq!(s.prefix_return, k as f64, "Take Cover pays +1 a tic");
    // Longer than the rollouts (at most 30 steps): an error that names the file.
    let err = StartLatents::from_rollouts(&vae, &data, EnvKind::TakeCover, 40, 64, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rollout_") && err.contains("41"), "{err}");
}

/// M's done probability along real episodes lands in the right ranges: every step of a killed
/// episode once, the killing step in the first range, a capped episode's steps apart.
#[test]
fn done_along_reality_sorts_m_s_done_probability_by_steps_before_the_death() {
    let env = EnvKind::TakeCover;
    let device = device();
    let model = random_model(env, 41);
    let vae = model.vae.unwrap();
    let rnn = force_heads(model.mdrnn.unwrap(), -2.0, 0.0);
    let p = 1.0 / (1.0 + 2f64.exp());
    let seeds = [1, 2, 3];
    let along = done_along_reality(env, AgentKind::Still, &seeds, 2100, &vae, &rnn, &device)
        .expect("done along reality");
    let real = run_baseline_episodes(env, AgentKind::Still, &seeds, 2100).unwrap();
    assert!(real.iter().all(|r| r.done), "standing still dies: {real:?}");
    let steps: usize = real.iter().map(|r| r.steps as usize).sum();
    let counts: Vec<usize> = along.before_death.iter().map(|&(_, n)| n).collect();
    assert_eq!(
        &counts[..4],
        &[3, 9, 21, 60],
        "three deaths, each with 30 steps before"
    );
    assert_eq!(counts.iter().sum::<usize>(), steps);
    assert_eq!(along.survived.1, 0);
    for &(q, _) in &along.before_death {
        assert!(
            (q - p).abs() < 1e-5,
            "a constant done logit of -2: {q} against {p}"
        );
    }
    // Capped before any death: every step counts as survived.
    let capped =
        done_along_reality(env, AgentKind::Still, &seeds, 20, &vae, &rnn, &device).unwrap();
    assert_eq!(capped.survived.1, 60);
    assert!((capped.survived.0 - p).abs() < 1e-5);
    assert!(capped.before_death.iter().all(|&(_, n)| n == 0));
    // It reads a baseline's episodes, and says so when asked for C's.
    let bad = EvalConfig {
        done_along_reality: true,
        ..EvalConfig::new(env, "unused.bin".into())
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("--still, --random or --sweep"), "{err}");
}

/// The paper's agent, one episode, one step at a time, written as plainly as possible.
fn reference_episode(
    env: EnvKind,
    model: &AgentModel<'_, B>,
    c: &Controller,
    seed: u64,
    max_steps: u32,
) -> (f64, u32) {
    let device = model.device;
    let hs = model.rnn.hidden_size();
    let mut e = env.make(seed);
    let mut obs: Frame = e.observation();
    let mut state = MdnRnnState::<B>::zeros(1, hs, device);
    let (mut ret, mut steps) = (0.0, 0);
    loop {
        let (mu, _) = model.vae.encode(frames_to_tensor::<B>(&[&obs], device));
        let z = mu.clone().into_data().to_vec::<f32>().unwrap();
        let h = state.hidden.clone().into_data().to_vec::<f32>().unwrap();
        let cell = state.cell.clone().into_data().to_vec::<f32>().unwrap();
        let action = c.act(&z, &cell, &h);
        let step = e.step(&action).unwrap();
        ret += f64::from(step.reward);
        steps += 1;
        if step.done() || steps >= max_steps {
            return (ret, steps);
        }
        obs = step.obs;
        let a = Tensor::<B, 2>::from_data(TensorData::new(action, [1, 1]), device);
        state = model.rnn.lstm_step(mu, a, state);
    }
}

#[test]
fn real_episodes_are_batched_deterministic_and_match_the_reference_agent() {
    let env = EnvKind::TakeCover;
    let device = device();
    let spec = ModelSpec::paper(env);
    let model = random_model(env, 21);
    let (vae, rnn) = (model.vae.unwrap(), model.mdrnn.unwrap());
    let agent = AgentModel {
        env,
        vae: &vae,
        rnn: &rnn,
        device: &device,
    };
    let c1 = random_controller(&spec, 0.5, 1);
    let c2 = random_controller(&spec, 0.5, 2);
    let controllers = [&c1, &c2, &c1];
    let seeds = [3, 4, 5];
    let max_steps = 40;
    let mut finished = Vec::new();
    let batched = run_real_episodes(&agent, &controllers, &seeds, max_steps, &mut |i, _| {
        finished.push(i)
    })
    .expect("batched episodes");
    assert_eq!(batched.len(), 3);
    finished.sort();
    assert_eq!(finished, vec![0, 1, 2], "each episode reported once");
    for r in &batched {
        assert!(
            r.ret.is_finite() && (1..=max_steps).contains(&r.steps),
            "{r:?}"
        );
        // Take Cover pays +1 per tic alive.
        assert_eq!(r.ret, f64::from(r.steps));
    }
    let again = run_real_episodes(&agent, &controllers, &seeds, max_steps, &mut |_, _| {}).unwrap();
    assert_eq!(batched, again, "deterministic under the seeds");
    for i in 0..3 {
        let alone = run_real_episodes(
            &agent,
            &controllers[i..=i],
            &seeds[i..=i],
            max_steps,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            alone[0], batched[i],
            "episode {i} does not depend on its batch mates"
        );
        let (ret, steps) = reference_episode(env, &agent, controllers[i], seeds[i], max_steps);
        assert_eq!(
            (batched[i].ret, batched[i].steps),
            (ret, steps),
            "episode {i} vs the reference agent"
        );
    }
}

#[test]
fn eval_scores_c_in_reality_and_dream_deterministically_and_writes_the_csv() {
    let dir_guard = scratch("eval");
    let dir = dir_guard.path().to_path_buf();
    let env = EnvKind::TakeCover;
    let mut model = random_model(env, 31);
    model.controller = Some(random_controller(&model.spec, 0.5, 4));
    let path = dir.join("world-model.bin");
    bundle::save(&model, &path, Precision::F32).unwrap();
    let config = EvalConfig {
        episodes: 3,
        max_steps: 30,
        seed: 2,
        dream_taus: vec![0.5, 1.15],
        csv: Some(dir.join("eval.csv")),
        ..EvalConfig::new(env, path.clone())
    };
    let device = device();
    let report = evaluate::<B>(&config, &device).expect("eval");
    assert_eq!(report.real.len(), 3);
    assert!(
        report
            .real
            .iter()
            .all(|r| r.ret.is_finite() && r.steps <= 30)
    );
    assert_eq!(report.dream.len(), 2);
    assert!(report.dream.iter().all(|(_, d)| d.len() == 3));
    let again = evaluate::<B>(&config, &device).unwrap();
    assert_eq!(report.real, again.real);
    assert_eq!(report.dream, again.dream);
    // Forked after 5 real steps of the data policy: the real scores do not change, and no dream
    // ends before its first dream step, the 6th of the episode.
    let forked_config = EvalConfig {
        dream_context: 5,
        csv: None,
        ..config.clone()
    };
    let forked = evaluate::<B>(&forked_config, &device).expect("eval with context");
    assert_eq!(forked.real, report.real);
    for (_, dreams) in &forked.dream {
        assert!(
            dreams
                .iter()
                .all(|r| r.steps >= 6 && r.ret == f64::from(r.steps)),
            "{dreams:?}"
        );
    }
    assert_eq!(
        forked.dream,
        evaluate::<B>(&forked_config, &device).unwrap().dream
    );
    let prefix = RealPrefix::run(env, 9, 5).unwrap();
    assert_eq!(
        (prefix.frames.len(), prefix.actions.len(), prefix.ret),
        (6, 5, 5.0)
    );
    assert_eq!(prefix.frames, RealPrefix::run(env, 9, 5).unwrap().frames);
    let csv = std::fs::read_to_string(dir.join("eval.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "episode,tau,return,steps,done");
    assert_eq!(lines.len(), 1 + 3 + 2 * 3, "{csv}");
    assert!(
        lines[1].starts_with("0,,"),
        "real rows have no tau: {}",
        lines[1]
    );
    assert!(lines[4].starts_with("0,0.5"), "{}", lines[4]);

    // The random baseline needs no C.
    let mut no_c = model.clone();
    no_c.controller = None;
    bundle::save(&no_c, &path, Precision::F32).unwrap();
    let random = evaluate::<B>(
        &EvalConfig {
            baseline: Some(AgentKind::Uniform),
            dream_taus: vec![],
            csv: None,
            ..config.clone()
        },
        &device,
    )
    .expect("random baseline");
    assert_eq!(random.real.len(), 3);
    // So does the still baseline, in the dream...
    let still_config = EvalConfig {
        baseline: Some(AgentKind::Still),
        dream_taus: vec![1.0],
        csv: None,
        ..config.clone()
    };
    let still = evaluate::<B>(&still_config, &device).expect("still in the dream");
    assert!(still.agent.contains("still"), "{}", still.agent);
    assert_eq!(still.dream.len(), 1);
    // ... and in reality, where its episodes (to the imps' fireballs, not a step cap) are the
    // env's under the zero action, step for step.
    let still_config = EvalConfig {
        max_steps: 2100,
        dream_taus: vec![],
        ..still_config
    };
    let still = evaluate::<B>(&still_config, &device).expect("still in reality");
    for (i, result) in still.real.iter().enumerate() {
        assert!(result.done, "the imps kill a player who never moves");
        let mut real = env.make(eval_episode_seed(still_config.seed, i as u64));
        let zero = vec![0.0; env.action_space().low.len()];
        let mut steps = 0;
        while steps < still_config.max_steps {
            steps += 1;
            if real.step(&zero).unwrap().done() {
                break;
            }
        }
        assert_eq!(result.steps, steps, "episode {i}");
    }
    // ... but C's evaluation does, and says which file and which command.
    let err = evaluate::<B>(&config, &device).expect_err("no C");
    let message = format!("{err:#}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("train-controller"), "{message}");
}

#[test]
fn clear_errors_for_a_run_without_m_bad_settings_and_no_rollouts() {
    let dir_guard = scratch("errors");
    let dir = dir_guard.path().to_path_buf();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let run = dir.join("run");
    let device = device();

    // The error names the bundle and the command that makes the missing part.
    let fails_naming = |command: &str| {
        let err = train_controller::<B>(&tiny_config(&run, &data, 1), &device).unwrap_err();
        let message = format!("{err:#}");
        let bundle = run_model_path(&run).display().to_string();
        assert!(
            message.contains(&bundle) && message.contains(command),
            "{message}"
        );
    };
    // No bundle at all.
    fails_naming("train-vae");

    // V but no M.
    let mut model = random_model(EnvKind::TakeCover, 41);
    model.mdrnn = None;
    save_run(&model, &run);
    fails_naming("train-mdrnn");

    // V and M, but no rollouts to start the dreams from.
    save_run(&random_model(EnvKind::TakeCover, 42), &run);
    let err = train_controller::<B>(&tiny_config(&run, &data, 1), &device).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("no rollouts") && message.contains(&data.display().to_string()),
        "{message}"
    );
    assert!(message.contains("dreamplay collect"), "{message}");

    // Impossible settings.
    for (config, flag) in [
        (
            ControllerTrainConfig {
                population: 1,
                ..tiny_config(&run, &data, 1)
            },
            "--population",
        ),
        (
            ControllerTrainConfig {
                trials: 0,
                ..tiny_config(&run, &data, 1)
            },
            "--trials",
        ),
        (
            ControllerTrainConfig {
                tau: 0.0,
                ..tiny_config(&run, &data, 1)
            },
            "--tau",
        ),
    ] {
        let message = format!("{:#}", train_controller::<B>(&config, &device).unwrap_err());
        assert!(message.contains(flag), "{flag}: {message}");
    }
    assert!(
        !run.join(CONTROLLER_DIR).exists(),
        "nothing written on an error"
    );
}

#[test]
fn the_commands_report_errors_and_the_random_baseline() {
    let bin = env!("CARGO_BIN_EXE_dreamplay");
    let dir_guard = scratch("cli");
    let dir = dir_guard.path().to_path_buf();
    let out = Command::new(bin)
        .args([
            "train-controller",
            "--env",
            "take-cover",
            "--population",
            "1",
            "--backend",
            "flex",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--population must be at least 2"));

    let out = Command::new(bin)
        .args(["eval", "--env", "take-cover", "--backend", "flex"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("models/take-cover/world-model.bin"),
        "{stderr}"
    );

    let out = Command::new(bin)
        .args([
            "eval",
            "--env",
            "take-cover",
            "--random",
            "--episodes",
            "3",
            "--max-steps",
            "20",
            "--backend",
            "flex",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("real: ") && stdout.contains("over 3 episodes"),
        "{stdout}"
    );
}
