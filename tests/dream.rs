//! The dream: shapes, determinism, batching, per-dream reset, the controller reading it.

use burn::prelude::*;
use dreamplay::dream::{Dream, DreamBatch, DreamError, DreamStart, RealityMemory};
use dreamplay::envs::{EnvKind, Frame};
use dreamplay::model::FlexBackend;
use dreamplay::model::bundle::ModelSpec;
use dreamplay::model::controller::Controller;
use dreamplay::model::mdrnn::MdnRnn;
use dreamplay::model::vae::ConvVae;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = FlexBackend;

fn parts(env: EnvKind, hidden: usize) -> (ModelSpec, ConvVae<B>, MdnRnn<B>) {
    let device = Default::default();
    B::seed(&device, 3);
    let spec = ModelSpec {
        hidden_size: hidden,
        ..ModelSpec::paper(env)
    };
    (
        spec,
        spec.vae_config().init(&device),
        spec.mdrnn_config().init(&device),
    )
}

/// The largest difference between two equally long vectors.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn frame() -> Frame {
    Frame::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    })
}

#[test]
fn dream_shapes_and_env_like_api() {
    let (spec, vae, rnn) = parts(EnvKind::CarRacing, 32);
    let mut dream = Dream::new(vae, rnn, &Default::default());
    dream.reset_from_frame(&frame());
    assert_eq!(dream.z().len(), 32);
    assert!(dream.hidden().iter().all(|&h| h == 0.0), "reset zeroes h");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let step = dream.step(&[0.1, 0.5, 0.0], 1.0, &mut rng).unwrap();
    assert_eq!(step.z.len(), 32);
    assert!(step.reward.is_finite());
    assert_eq!(dream.hidden().len(), 32);
    assert_eq!(dream.cell().len(), 32);
    assert!(dream.hidden().iter().any(|&h| h != 0.0), "a step moves h");
    assert_eq!(dream.elapsed_steps(), 1);
    let f = dream.frame();
    assert_eq!(f.dimensions(), (64, 64));
    // The controller reads [z, h].
    let c = spec.controller();
    assert_eq!(c.act(dream.z(), dream.cell(), dream.hidden()).len(), 3);
    // A wrong action is an error, not a panic.
    assert!(matches!(
        dream.step(&[0.0], 1.0, &mut rng),
        Err(DreamError::WrongActionLength { .. })
    ));
    assert!(matches!(
        dream.step(&[f32::NAN, 0.0, 0.0], 1.0, &mut rng),
        Err(DreamError::NotFinite { .. })
    ));
    dream.reset_random(&mut rng);
    assert_eq!(dream.elapsed_steps(), 0);
}

/// A dream forked after K real steps holds the memory M built along them: the same h and c as a
/// dream made to follow those latents step by step (the app's "fork the dream"), from the last
/// real latent. Without context it is the paper's start, a zero state. Bad starts are errors.
#[test]
fn a_dream_forked_after_real_context_holds_the_memory_m_built_along_it() {
    let (_, vae, rnn) = parts(EnvKind::TakeCover, 32);
    let device = Default::default();
    let (zs, k) = (rnn.z_size(), 4);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let starts: Vec<DreamStart> = (0..2)
        .map(|_| DreamStart {
            z: (0..(k + 1) * zs)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
            actions: (0..k).map(|_| rng.random_range(-1.0..1.0)).collect(),
            prefix_return: k as f64,
        })
        .collect();
    let mut batch = DreamBatch::new(vae.clone(), rnn.clone(), 2, &device);
    batch.reset_from_starts(&starts).unwrap();
    assert_eq!(batch.steps(), &[0, 0]);
    for (i, s) in starts.iter().enumerate() {
        let mut follow = Dream::new(vae.clone(), rnn.clone(), &device);
        follow.reset_to_z(&s.z[..zs]).unwrap();
        for t in 0..k {
            follow.set_z(&s.z[t * zs..(t + 1) * zs]).unwrap();
            follow.step(&s.actions[t..=t], 1.0, &mut rng).unwrap();
        }
        assert_eq!(
            batch.z(i),
            &s.z[k * zs..],
            "dream {i} stands at the last real z"
        );
        assert!(batch.hidden(i).iter().any(|&h| h != 0.0));
        let (dh, dc) = (
            max_diff(batch.hidden(i), follow.hidden()),
            max_diff(batch.cell(i), follow.cell()),
        );
        assert!(
            dh < 1e-5 && dc < 1e-5,
            "dream {i}: h differs by {dh}, c by {dc}"
        );
    }
    // Stepping on from there follows the same memory.
    batch.step(&[0.0, 0.0], 1.0, &mut rng).unwrap();
    assert_eq!(batch.steps(), &[1, 1]);

    let paper: Vec<DreamStart> = starts
        .iter()
        .map(|s| DreamStart::at(s.z[..zs].to_vec()))
        .collect();
    batch.reset_from_starts(&paper).unwrap();
    assert!(
        batch
            .hidden(0)
            .iter()
            .chain(batch.cell(1))
            .all(|&v| v == 0.0)
    );
    assert_eq!(batch.z(1), &starts[1].z[..zs]);

    let mixed = [starts[0].clone(), paper[1].clone()];
    assert!(matches!(
        batch.reset_from_starts(&mixed),
        Err(DreamError::MixedContext {
            index: 1,
            got: 0,
            expected: 4
        })
    ));
    let mut short = starts.clone();
    short[1].z.pop();
    assert!(matches!(
        batch.reset_from_starts(&short),
        Err(DreamError::StartShape { index: 1, .. })
    ));
    assert!(matches!(
        batch.reset_from_starts(&starts[..1]),
        Err(DreamError::WrongStartCount { got: 1, batch: 2 })
    ));
}

/// The app's "dream from here": a dream reset to another dream's z, h and c steps exactly as that
/// one would (same seed, same next z), and from step 0; memory of the wrong size is an error.
#[test]
fn a_dream_reset_to_another_s_state_steps_as_it_would() {
    let (_, vae, rnn) = parts(EnvKind::TakeCover, 32);
    let device = Default::default();
    let mut follower = Dream::new(vae.clone(), rnn.clone(), &device);
    follower.reset_from_frame(&frame());
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for t in 0..5 {
        follower
            .step(&[t as f32 / 5.0 - 0.5], 1.0, &mut rng)
            .unwrap();
    }
    assert!(follower.hidden().iter().any(|&h| h != 0.0));

    let mut fork = Dream::new(vae, rnn, &device);
    fork.reset_to_state(follower.z(), follower.hidden(), follower.cell())
        .unwrap();
    assert_eq!(fork.elapsed_steps(), 0);
    assert_eq!(
        (fork.z(), fork.hidden(), fork.cell()),
        (follower.z(), follower.hidden(), follower.cell())
    );
    // The same z from a zero state: what the fork would be without the memory.
    let mut forgetful = fork.clone();
    forgetful.reset_to_z(follower.z()).unwrap();
    let next = |dream: &mut Dream<B>| {
        dream
            .step(&[0.3], 1.15, &mut ChaCha8Rng::seed_from_u64(8))
            .unwrap()
    };
    let ahead = next(&mut follower);
    assert_eq!(next(&mut fork), ahead);
    assert_ne!(
        next(&mut forgetful).z,
        ahead.z,
        "the memory is what made them agree"
    );

    assert!(matches!(
        fork.reset_to_state(&[0.0; 64], &[0.0; 31], &[0.0; 32]),
        Err(DreamError::WrongMemoryLength {
            expected: 32,
            got: 31
        })
    ));
}

/// C's memory of reality holds what a dream that is told each real z would hold: V's mu of the
/// frame, and M's h and c after the LSTM read [z, a]. Rows that leave keep the others' memory.
#[test]
fn the_memory_of_reality_is_v_s_encoding_and_m_s_lstm_along_the_episode() {
    let (_, vae, rnn) = parts(EnvKind::TakeCover, 32);
    let device = Default::default();
    let frames: Vec<Frame> = (0..3u8)
        .map(|k| {
            Frame::from_fn(64, 64, |x, y| {
                image::Rgb([(x * 4) as u8, (y * 4) as u8, 60 * k])
            })
        })
        .collect();
    let refs: Vec<&Frame> = frames.iter().collect();
    let actions = [-1.0, 0.0, 1.0];
    let mut memory = RealityMemory::for_model(&rnn, 3);
    for _ in 0..3 {
        memory.observe(&vae, &refs, &device).unwrap();
        memory.advance(&rnn, &actions, &device).unwrap();
    }
    for (i, frame) in frames.iter().enumerate() {
        // A dream told reality's z each step, stepping at tau 0 under the threshold (no draws).
        let mut told = Dream::new(vae.clone(), rnn.clone(), &device);
        let z = vae.encode_frames(&[frame], &device).0;
        for _ in 0..3 {
            told.set_z(&z).unwrap();
            told.step(&[actions[i]], 0.0, &mut ChaCha8Rng::seed_from_u64(0))
                .unwrap();
        }
        let latent = memory.latent(i);
        assert!(max_diff(latent.z, &z) < 1e-5, "row {i}: z is V's mu");
        assert!(max_diff(latent.hidden, told.hidden()) < 1e-5, "row {i}: h");
        assert!(max_diff(latent.cell, told.cell()) < 1e-5, "row {i}: c");
    }
    let (h0, h2) = (
        memory.latent(0).hidden.to_vec(),
        memory.latent(2).hidden.to_vec(),
    );
    assert_ne!(
        h0, h2,
        "different frames and actions give different memories"
    );
    memory.retain(&[0, 2]);
    assert_eq!(memory.rows(), 2);
    assert_eq!(
        (memory.latent(0).hidden, memory.latent(1).hidden),
        (&h0[..], &h2[..])
    );
    assert!(matches!(
        memory.observe(&vae, &refs, &device),
        Err(DreamError::FrameCount {
            frames: 3,
            indices: 2
        })
    ));
    assert!(matches!(
        memory.advance(&rnn, &[0.0], &device),
        Err(DreamError::WrongActionLength {
            expected: 2,
            got: 1,
            ..
        })
    ));
    memory.forget();
    assert!(memory.latent(1).cell.iter().all(|&c| c == 0.0));
}

#[test]
fn dream_is_deterministic_under_a_seed() {
    let (_, vae, rnn) = parts(EnvKind::TakeCover, 32);
    let run = |seed: u64| {
        let mut dream = Dream::new(vae.clone(), rnn.clone(), &Default::default());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        dream.reset_random(&mut rng);
        let mut trace = Vec::new();
        for t in 0..10 {
            trace.push(
                dream
                    .step(&[(t as f32 * 0.3).sin()], 1.15, &mut rng)
                    .unwrap(),
            );
        }
        trace
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn batched_dreams_equal_single_dreams_and_reset_independently() {
    let (spec, vae, rnn) = parts(EnvKind::CarRacing, 32);
    let device = Default::default();
    let n = 3;
    let mut batch = DreamBatch::new(vae.clone(), rnn.clone(), n, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    batch.reset_all_random(&mut rng);
    let starts: Vec<Vec<f32>> = (0..n).map(|i| batch.z(i).to_vec()).collect();
    let actions: Vec<f32> = (0..n * 3).map(|i| ((i as f32) * 0.7).cos() * 0.5).collect();
    // tau = 0: deterministic, so each batched dream must follow its single twin.
    for _ in 0..5 {
        batch.step(&actions, 0.0, &mut rng).unwrap();
    }
    for i in 0..n {
        let mut single = Dream::new(vae.clone(), rnn.clone(), &device);
        single.reset_to_z(&starts[i]).expect("a z of z_size");
        for _ in 0..5 {
            single
                .step(&actions[i * 3..(i + 1) * 3], 0.0, &mut rng)
                .unwrap();
        }
        let diff = max_diff(single.z(), batch.z(i));
        assert!(diff < 1e-4, "dream {i}: batch and single differ by {diff}");
        let dh = max_diff(single.hidden(), batch.hidden(i));
        assert!(dh < 1e-4, "dream {i}: h differs by {dh}");
    }
    // Resetting dream 1 leaves dreams 0 and 2 running.
    let before0 = batch.z(0).to_vec();
    batch
        .reset_from_frames(&[1], &[&frame()], Some(&mut rng))
        .unwrap();
    assert!(batch.hidden(1).iter().all(|&h| h == 0.0));
    assert_eq!(batch.z(0), &before0[..]);
    assert_eq!(batch.steps(), &[5, 0, 5]);
    batch.step(&actions, 1.0, &mut rng).unwrap();
    assert_eq!(batch.steps(), &[6, 1, 6]);
    // Batch decode and single decode agree (to one 8-bit level: batch-size float differences).
    let frames = batch.frames();
    assert_eq!(frames.len(), n);
    let single = batch.frame(2);
    let max = frames[2]
        .as_raw()
        .iter()
        .zip(single.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(max <= 1, "batch and single decode differ by {max} levels");
    // The controller drives every dream from its own [z, h].
    let mut c: Controller = spec.controller();
    let p: Vec<f32> = (0..c.param_count())
        .map(|_| rng.random_range(-0.1..0.1))
        .collect();
    c.set_params(&p).unwrap();
    let acts: Vec<f32> = (0..n)
        .flat_map(|i| c.act(batch.z(i), batch.cell(i), batch.hidden(i)))
        .collect();
    batch.step(&acts, 1.0, &mut rng).unwrap();
    assert!(
        batch.reset_random(n, &mut rng).is_err(),
        "out-of-range index is an error"
    );
}

/// The shipped Take Cover model's V and M.
fn shipped_take_cover(device: &burn::tensor::Device<B>) -> (ConvVae<B>, MdnRnn<B>) {
    use dreamplay::model::bundle::{self, Expect};
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/take-cover/world-model.bin");
    let model = bundle::load::<B>(&path, &Expect::env(EnvKind::TakeCover), device)
        .expect("the repository ships models/take-cover/world-model.bin");
    (
        model.vae.expect("the shipped bundle has V"),
        model.mdrnn.expect("the shipped bundle has M"),
    )
}

/// Share of frames showing a fireball in 16 dreams of the shipped Take Cover model, forked from
/// real first frames and left standing still for 200 steps at temperature `tau`.
fn shipped_take_cover_fireball_rate(tau: f32) -> f64 {
    let device = Default::default();
    let (vae, rnn) = shipped_take_cover(&device);
    let n = 16;
    let mut batch = DreamBatch::new(vae, rnn, n, &device);
    let starts: Vec<Frame> = (0..n)
        .map(|i| EnvKind::TakeCover.make(i as u64).observation())
        .collect();
    let indices: Vec<usize> = (0..n).collect();
    let refs: Vec<&Frame> = starts.iter().collect();
    batch
        .reset_from_frames::<ChaCha8Rng>(&indices, &refs, None)
        .expect("one frame per dream");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut showing, mut seen) = (0, 0);
    for t in 0..200 {
        batch
            .step(&vec![0.0; n], tau, &mut rng)
            .expect("valid actions");
        if t % 5 == 4 {
            for frame in batch.frames() {
                seen += 1;
                if EnvKind::TakeCover.shows_hazard(frame.as_raw()) {
                    showing += 1;
                }
            }
        }
    }
    f64::from(showing) / f64::from(seen)
}

/// The lecture story on the shipped model: fireballs come in the dream at both ends of the app's
/// Take Cover tau slider. M's most likely path (tau 0.1) throws them too: the 2,000-rollout M
/// learnt the throws, where the 400-rollout M shipped before it drew almost none when cold, and
/// its cold dream was the paper's easy one to cheat (`models/take-cover/EXPERIMENTS.md`).
#[test]
fn the_shipped_take_cover_dream_throws_fireballs_hot_and_cold() {
    let hot = shipped_take_cover_fireball_rate(3.0);
    let cold = shipped_take_cover_fireball_rate(0.1);
    eprintln!(
        "dream frames with a fireball: {:.1}% at tau 3, {:.1}% at tau 0.1",
        100.0 * hot,
        100.0 * cold
    );
    for (tau, rate) in [(3.0, hot), (0.1, cold)] {
        assert!(
            rate > 0.05,
            "at tau {tau} only {:.1}% of dream frames show a fireball",
            100.0 * rate
        );
    }
}

/// M's done head on the shipped Take Cover model, along real episodes of the paper's data policy:
/// (mean probability at the step that kills, mean probability 31+ steps before a death). M reads
/// V's mu of each real frame and the action taken, from a zero state, as in the dream.
fn shipped_take_cover_done_at_and_far_from_death() -> (f64, f64) {
    use burn::tensor::TensorData;
    use dreamplay::agent::{Agent, HeldRandom, Seen};
    let device = Default::default();
    let (vae, rnn) = shipped_take_cover(&device);
    let (zs, a) = (rnn.z_size(), rnn.action_size());
    let (mut at_death, mut far, mut deaths, mut far_steps) = (0.0, 0.0, 0, 0);
    for seed in 0..12u64 {
        let mut env = EnvKind::TakeCover.make(seed);
        let mut policy = HeldRandom::new(EnvKind::TakeCover.action_space(), seed);
        let (mut frames, mut actions) = (Vec::new(), Vec::new());
        let died = loop {
            let frame = env.observation();
            let action = policy.act(&Seen::frame(&frame));
            frames.push(frame);
            actions.extend_from_slice(&action);
            let step = env.step(&action).expect("a valid action");
            if step.done() {
                break step.terminated;
            }
        };
        let t_len = frames.len();
        let refs: Vec<&Frame> = frames.iter().collect();
        let (mu, _) = vae.encode_frames(&refs, &device);
        let z = Tensor::<B, 3>::from_data(TensorData::new(mu, [1, t_len, zs]), &device);
        let act = Tensor::<B, 3>::from_data(TensorData::new(actions, [1, t_len, a]), &device);
        let logits: Vec<f32> = rnn
            .forward(z, act, None)
            .done_logit
            .into_data()
            .to_vec()
            .expect("f32 logits");
        let p = |t: usize| 1.0 / (1.0 + (-f64::from(logits[t])).exp());
        if died {
            deaths += 1;
            at_death += p(t_len - 1);
            for t in 0..t_len.saturating_sub(31) {
                far += p(t);
                far_steps += 1;
            }
        }
    }
    assert!(
        deaths >= 10,
        "only {deaths} of 12 episodes ended in a death"
    );
    (at_death / f64::from(deaths), far / f64::from(far_steps))
}

/// The dream can only teach C to dodge if M sees death coming: its done head must fire on the
/// step a fireball kills, not at the same low rate everywhere (which an M trained on windows
/// that never reached the death did, ~0.002 at the death against ~0.001 elsewhere).
#[test]
fn the_shipped_take_cover_m_sees_death_coming() {
    let (at_death, far) = shipped_take_cover_done_at_and_far_from_death();
    eprintln!("M's done probability: {at_death:.3} on the killing step, {far:.4} far from death");
    assert!(at_death > 0.3, "{at_death:.3} on the killing step");
    assert!(
        at_death > 10.0 * far,
        "{at_death:.3} at death, {far:.4} far from it"
    );
}

/// The dream the shipped C was evolved in (tau 0.5, forked after 10 real steps, M's done odds /
/// 10) ranks the blind policies as reality does: the 80-step sweep, which lives 5.5 times as
/// long as standing still in reality, outlives it in the dream by about as much, and outlives
/// holding left all episode (against the wall; 165 real steps). A dream that cannot tell them
/// apart cannot teach C to dodge, and one where the wall is safe teaches C to hug it: at tau 1.15
/// this M lets the wall live 852 dream steps against the sweep's 573, and a C evolved in an
/// earlier M's such dream scored 190 in reality (`models/take-cover/EXPERIMENTS.md`, first
/// sections).
#[test]
fn the_shipped_take_cover_dream_ranks_a_sweep_above_standing_still_and_the_wall() {
    use dreamplay::agent::AgentKind;
    use dreamplay::train::eval::{EvalConfig, evaluate};
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/take-cover/world-model.bin");
    let mean_dream_steps = |baseline: AgentKind| {
        let config = EvalConfig {
            episodes: 100,
            seed: 500,
            dream_taus: vec![0.5],
            done_odds: 0.1,
            dream_context: 10,
            baseline: Some(baseline),
            ..EvalConfig::new(EnvKind::TakeCover, path.clone())
        };
        let report = evaluate::<B>(&config, &Default::default()).expect("the shipped model");
        let dreams = &report.dream[0].1;
        dreams.iter().map(|r| f64::from(r.steps)).sum::<f64>() / dreams.len() as f64
    };
    let still = mean_dream_steps(AgentKind::Still);
    let sweep = mean_dream_steps(AgentKind::Sweep(80));
    // A sweep longer than an episode: left, and nothing else.
    let wall = mean_dream_steps(AgentKind::Sweep(2100));
    eprintln!(
        "mean dream steps at tau 0.5: still {still:.0}, sweep 80 {sweep:.0}, left to the wall {wall:.0}"
    );
    assert!(
        sweep > 3.0 * still,
        "the sweep lives {sweep:.0} dream steps, standing still {still:.0}"
    );
    assert!(
        sweep > 1.2 * wall,
        "the sweep lives {sweep:.0} dream steps, hugging the left wall {wall:.0}"
    );
}

/// The shipped Take Cover model in reality and in the paper's dream at tau 1.15, for the shipped C
/// over seeds 0..29 (`models/take-cover/EXPERIMENTS.md`, "What the dream-rich, reality-poor Cs
/// exploit"; `cargo test --test dream dream_against_reality -- --nocapture` prints the figures).
/// It asserts what the comparison rests on: V's reconstructions keep the fireballs that come
/// near, the ones that kill, so a dream without them is M's doing, not V's. (The shipped C sweeps
/// the room, and V drops many of the far, few-pixel fireballs it passes: 0.152 of frames against
/// 0.354.)
#[test]
fn the_shipped_take_cover_dream_against_reality() {
    use dreamplay::envs::take_cover::{NEAR_FIREBALL_PIXELS, fireball_pixels, move_direction};
    use dreamplay::model::mdrnn::DoneRule;
    use dreamplay::model::mdrnn::MdnRnnState;
    let device = Default::default();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/take-cover/world-model.bin");
    let model = dreamplay::model::bundle::load::<B>(
        &path,
        &dreamplay::model::bundle::Expect::env(EnvKind::TakeCover),
        &device,
    )
    .expect("the repository ships models/take-cover/world-model.bin");
    let (Some(vae), Some(rnn), Some(c)) = (model.vae, model.mdrnn, model.controller) else {
        panic!("the shipped Take Cover bundle has V, M and C");
    };
    let shows_fireball = |frame: &Frame| fireball_pixels(frame.as_raw()) >= 4;
    let shows_near_fireball =
        |frame: &Frame| fireball_pixels(frame.as_raw()) >= NEAR_FIREBALL_PIXELS;
    // Mean length of a run of the same move, over all steps in order.
    let hold = |moves: &[f32]| {
        moves.len() as f64 / (1 + moves.windows(2).filter(|w| w[0] != w[1]).count()) as f64
    };
    let (zs, hs) = (rnn.z_size(), rnn.hidden_size());
    let episodes = 30;

    // Reality: V's mu of each frame, C acts, M's LSTM follows, as in `eval`.
    let (mut moves, mut steps, mut real_fireballs, mut recon_fireballs) = (Vec::new(), 0, 0, 0);
    let (mut real_near, mut recon_near) = (0, 0);
    let decoder = vae.frame_decoder();
    for seed in 0..episodes {
        let mut env = EnvKind::TakeCover.make(seed);
        let mut state = MdnRnnState::<B>::zeros(1, hs, &device);
        loop {
            let frame = env.observation();
            let (mu, _) = vae.encode_frames(&[&frame], &device);
            let read =
                |t: Tensor<B, 2>| t.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
            let action = c.act(&mu, &read(state.cell.clone()), &read(state.hidden.clone()));
            moves.push(move_direction(action[0]));
            steps += 1;
            real_fireballs += usize::from(shows_fireball(&frame));
            let recon = &decoder.decode_to_frames(&mu, &device)[0];
            recon_fireballs += usize::from(shows_fireball(recon));
            real_near += usize::from(shows_near_fireball(&frame));
            recon_near += usize::from(shows_near_fireball(recon));
            let z = Tensor::from_data(TensorData::new(mu, [1, zs]), &device);
            let a = Tensor::from_data(TensorData::new(action.clone(), [1, 1]), &device);
            state = rnn.lstm_step(z, a, state);
            if env.step(&action).expect("a valid action").done() {
                break;
            }
        }
    }

    // The dream: from V's mu of the same first frames, drawn done, every 5th frame checked.
    let n = episodes as usize;
    let mut dream = DreamBatch::new(vae.clone(), rnn, n, &device);
    dream.set_done_rule(DoneRule::Sample);
    for i in 0..n {
        let (mu, _) =
            vae.encode_frames(&[&EnvKind::TakeCover.make(i as u64).observation()], &device);
        dream.reset_to_z(i, &mu).expect("a z of V's size");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut alive = vec![true; n];
    let (mut dream_moves, mut dream_steps, mut checked, mut dream_fireballs) =
        (Vec::new(), 0, 0, 0);
    for t in 0..2100 {
        if !alive.contains(&true) {
            break;
        }
        let mut actions = vec![0.0f32; n];
        for i in (0..n).filter(|&i| alive[i]) {
            actions[i] = c.act(dream.z(i), dream.cell(i), dream.hidden(i))[0];
            dream_moves.push(actions[i]);
        }
        if t % 5 == 0 {
            for (frame, _) in dream.frames().iter().zip(&alive).filter(|(_, a)| **a) {
                checked += 1;
                dream_fireballs += usize::from(shows_fireball(frame));
            }
        }
        dream.step(&actions, 1.15, &mut rng).expect("valid actions");
        for (alive, &done) in alive.iter_mut().zip(dream.dones()).filter(|(a, _)| **a) {
            dream_steps += 1;
            *alive = !done;
        }
    }

    let share = |k: usize, of: usize| k as f64 / of as f64;
    let (real, recon, dreamt) = (
        share(real_fireballs, steps),
        share(recon_fireballs, steps),
        share(dream_fireballs, checked),
    );
    let (near, recon_near) = (share(real_near, steps), share(recon_near, steps));
    eprintln!(
        "shipped C, {episodes} episodes and dreams: length {:.0} real, {:.0} dreamt; holds a move {:.1} steps real, {:.1} dreamt; frames with a fireball {real:.3} real, {recon:.3} in V's reconstructions, {dreamt:.3} dreamt; with a near one {near:.3} real, {recon_near:.3} in V's",
        steps as f64 / n as f64,
        dream_steps as f64 / n as f64,
        hold(&moves),
        hold(&dream_moves),
    );
    assert!(real > 0.05, "only {real:.3} of real frames show a fireball");
    assert!(
        near > 0.01,
        "only {near:.3} of real frames show a near fireball"
    );
    assert!(
        recon_near > 0.8 * near,
        "V's reconstructions keep {recon_near:.3} against {near:.3} of the real frames with a near fireball"
    );
}

/// A fan of futures: fork_all puts every row at one state; at tau 0 the rows then step alike, and
/// fork_rows re-forks some rows while the others keep theirs. A bad state is an error that
/// changes nothing.
#[test]
fn fork_all_puts_every_dream_at_one_state() {
    let (_, vae, rnn) = parts(EnvKind::TakeCover, 32);
    let device = Default::default();
    let (n, zs, hs) = (4, rnn.z_size(), rnn.hidden_size());
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut batch = DreamBatch::new(vae, rnn, n, &device);
    batch.reset_all_random(&mut rng);
    batch.step(&[0.3; 4], 1.0, &mut rng).unwrap();
    let z: Vec<f32> = (0..zs).map(|_| rng.random_range(-1.0..1.0)).collect();
    let h: Vec<f32> = (0..hs).map(|_| rng.random_range(-0.5..0.5)).collect();
    let c: Vec<f32> = (0..hs).map(|_| rng.random_range(-0.5..0.5)).collect();
    batch.fork_all(&z, &h, &c).unwrap();
    assert_eq!(batch.steps(), &[0; 4]);
    for i in 0..n {
        assert_eq!(
            (batch.z(i), batch.hidden(i), batch.cell(i)),
            (&z[..], &h[..], &c[..])
        );
    }
    batch.step(&[-0.7; 4], 0.0, &mut rng).unwrap();
    for i in 1..n {
        assert!(
            max_diff(batch.z(0), batch.z(i)) < 1e-5,
            "row {i} left the fan at tau 0"
        );
    }
    let moved = batch.z(0).to_vec();
    batch.fork_rows(2..4, &z, &h, &c).unwrap();
    assert_eq!(batch.steps(), &[1, 1, 0, 0]);
    assert_eq!((batch.z(1), batch.z(3)), (&moved[..], &z[..]));

    let before = batch.z(0).to_vec();
    assert!(matches!(
        batch.fork_all(&z[1..], &h, &c),
        Err(DreamError::WrongZLength { .. })
    ));
    assert!(matches!(
        batch.fork_all(&z, &h[1..], &c),
        Err(DreamError::WrongMemoryLength { .. })
    ));
    assert!(matches!(
        batch.fork_rows(3..5, &z, &h, &c),
        Err(DreamError::BadIndex { index: 4, .. })
    ));
    assert_eq!(batch.z(0), &before[..], "a failed fork changes nothing");
}
