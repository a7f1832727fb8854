//! A measurement, not a regular test: how often a blind Take Cover policy is hit by a fireball in
//! reality and in M's dream, and whether the hit is preceded by the fireball coming near (the cue
//! M's done head reads). `docs/take-cover.md` quotes its figures.
//!
//!     cargo test --test take_cover_hits -- --ignored --nocapture
//!
//! `HITS_MODEL` names another bundle (default: the shipped one), `HITS_TAU` the dream's tau
//! (default 1.15). Ignored because it takes minutes; it asserts what the comparison rests on, on
//! the reality side.

use dreamplay::dream::{DreamBatch, DreamStart};
use dreamplay::envs::take_cover::{NEAR_FIREBALL_PIXELS, TakeCover, fireball_pixels};
use dreamplay::envs::{Env, EnvKind, Frame};
use dreamplay::model::FlexBackend;
use dreamplay::model::bundle::{Expect, load};
use dreamplay::model::mdrnn::DoneRule;
use dreamplay::model::mdrnn::MdnRnn;
use dreamplay::model::vae::ConvVae;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type B = FlexBackend;

const EPISODES: usize = 30;
/// Real steps (of the same policy) M reads before each dream forks, as `eval --dream-context 10`.
const CONTEXT: usize = 10;
const DREAM_STEPS: usize = 400;
/// A frame whose mean red exceeds its mean green by this much is under Doom's damage flash: clean
/// frames of V's reconstructions score 7-19, flashed ones 109-139.
const FLASH_REDNESS: f64 = 60.0;
/// Frames before a hit searched for a near fireball: 6 real steps, or 3 dream frames checked
/// every 2nd step.
const REAL_WINDOW: usize = 6;
const DREAM_WINDOW: usize = 3;

#[derive(Clone, Copy)]
enum Policy {
    Still,
    /// Left 80 steps, right 80, and so on.
    Sweep80,
    /// Left all episode: into the left wall.
    Wall,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Still => "still",
            Policy::Sweep80 => "sweep 80",
            Policy::Wall => "left wall",
        }
    }
    fn action(self, step: usize) -> f32 {
        match self {
            Policy::Still => 0.0,
            Policy::Sweep80 if (step / 80) % 2 == 1 => 1.0,
            Policy::Sweep80 | Policy::Wall => -1.0,
        }
    }
}

/// The last `n` items of `v` (fewer at its start).
fn last<T>(v: &[T], n: usize) -> &[T] {
    &v[v.len().saturating_sub(n)..]
}

/// The mean step of the first hit, an episode or dream without one counting as the dream's end.
fn mean_first_hit(first_hits: &[Option<usize>]) -> f64 {
    let end = CONTEXT + DREAM_STEPS;
    let sum: usize = first_hits
        .iter()
        .map(|h| h.map_or(end, |t| t.min(end)))
        .sum();
    sum as f64 / first_hits.len() as f64
}

fn redness(frame: &Frame) -> f64 {
    let (r, g) = frame.pixels().fold((0.0, 0.0), |(r, g), p| {
        (r + f64::from(p[0]), g + f64::from(p[1]))
    });
    (r - g) / f64::from(frame.width() * frame.height())
}

struct RealSide {
    steps: usize,
    hits: usize,
    /// Hits with a near fireball in the real frames before, and in V's reconstructions of them.
    cued: usize,
    cued_by_v: usize,
    /// Each episode's first hit (step).
    first_hit: Vec<Option<usize>>,
    starts: Vec<DreamStart>,
}

fn real_side(policy: Policy, vae: &ConvVae<B>) -> RealSide {
    let device = Default::default();
    let decoder = vae.frame_decoder();
    let mut side = RealSide {
        steps: 0,
        hits: 0,
        cued: 0,
        cued_by_v: 0,
        first_hit: Vec::new(),
        starts: Vec::new(),
    };
    for episode in 0..EPISODES {
        let mut env = TakeCover::new(500 + episode as u64);
        let (mut zs, mut actions, mut near) = (Vec::new(), Vec::new(), Vec::new());
        let mut first_hit = None;
        for t in 0.. {
            let frame = env.observation();
            let (mu, _) = vae.encode_frames(&[&frame], &device);
            let recon = &decoder.decode_to_frames(&mu, &device)[0];
            near.push((
                fireball_pixels(frame.as_raw()) >= NEAR_FIREBALL_PIXELS,
                fireball_pixels(recon.as_raw()) >= NEAR_FIREBALL_PIXELS,
            ));
            let action = policy.action(t);
            if t <= CONTEXT {
                zs.extend_from_slice(&mu);
            }
            if t < CONTEXT {
                actions.push(action);
            }
            let health = env.health();
            let done = env.step(&[action]).expect("a valid action").done();
            side.steps += 1;
            if env.health() < health {
                side.hits += 1;
                first_hit.get_or_insert(t);
                let before = last(&near, REAL_WINDOW);
                side.cued += usize::from(before.iter().any(|n| n.0));
                side.cued_by_v += usize::from(before.iter().any(|n| n.1));
            }
            if done {
                break;
            }
        }
        side.first_hit.push(first_hit);
        side.starts.push(DreamStart {
            z: zs,
            actions,
            prefix_return: 0.0,
        });
    }
    side
}

struct DreamSide {
    checked: usize,
    /// Frames that turn red after one that was not: the dream's hits.
    onsets: usize,
    cued: usize,
    /// Done drawn (M's odds as trained) in the 5 steps before an onset, and over all steps.
    done_before: (usize, usize),
    done_all: usize,
    first_hit: Vec<Option<usize>>,
}

/// The dream forked after the real context, the policy acting on, done drawn but ignored.
fn dream_side(
    policy: Policy,
    vae: &ConvVae<B>,
    rnn: &MdnRnn<B>,
    starts: &[DreamStart],
    tau: f32,
) -> DreamSide {
    let n = starts.len();
    let mut dream = DreamBatch::new(vae.clone(), rnn.clone(), n, &Default::default());
    dream
        .reset_from_starts(starts)
        .expect("starts of V's and M's sizes");
    dream.set_done_rule(DoneRule::Sample);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut side = DreamSide {
        checked: 0,
        onsets: 0,
        cued: 0,
        done_before: (0, 0),
        done_all: 0,
        first_hit: vec![None; n],
    };
    let (mut red, mut near, mut dones) = (vec![false; n], vec![Vec::new(); n], vec![Vec::new(); n]);
    for t in CONTEXT..CONTEXT + DREAM_STEPS {
        if t % 2 == 0 {
            for (i, frame) in dream.frames().iter().enumerate() {
                let flashed = redness(frame) > FLASH_REDNESS;
                side.checked += 1;
                if flashed && !red[i] {
                    side.onsets += 1;
                    side.cued += usize::from(last(&near[i], DREAM_WINDOW).contains(&true));
                    let window = last(&dones[i], 5);
                    side.done_before.0 += window.iter().filter(|d| **d).count();
                    side.done_before.1 += window.len();
                    side.first_hit[i].get_or_insert(t);
                }
                red[i] = flashed;
                near[i].push(fireball_pixels(frame.as_raw()) >= NEAR_FIREBALL_PIXELS);
            }
        }
        dream
            .step(&vec![policy.action(t); n], tau, &mut rng)
            .expect("valid actions");
        for (i, &done) in dream.dones().iter().enumerate() {
            dones[i].push(done);
            side.done_all += usize::from(done);
        }
    }
    side
}

#[test]
#[ignore = "a measurement of minutes; run it with --ignored --nocapture"]
fn take_cover_hits_in_reality_and_in_the_dream() {
    let path = std::env::var("HITS_MODEL").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/take-cover/world-model.bin"
        )
        .to_string()
    });
    let tau: f32 =
        std::env::var("HITS_TAU").map_or(1.15, |t| t.parse().expect("HITS_TAU: a number"));
    let model = load::<B>(
        std::path::Path::new(&path),
        &Expect::env(EnvKind::TakeCover),
        &Default::default(),
    )
    .expect("a Take Cover bundle");
    let (Some(vae), Some(rnn)) = (model.vae, model.mdrnn) else {
        panic!("{path} has no V or M");
    };
    let share = |k: usize, of: usize| k as f64 / of.max(1) as f64;
    let mut hit_rates = Vec::new();
    for policy in [Policy::Still, Policy::Sweep80, Policy::Wall] {
        let real = real_side(policy, &vae);
        let dream = dream_side(policy, &vae, &rnn, &real.starts, tau);
        let real_rate = 100.0 * share(real.hits, real.steps);
        eprintln!(
            "{}: real {:.0} steps, {real_rate:.2} hits per 100 steps, first hit at {:.1}, {:.3} of hits after a near fireball ({:.3} in V's reconstructions)",
            policy.name(),
            share(real.steps, EPISODES),
            mean_first_hit(&real.first_hit),
            share(real.cued, real.hits),
            share(real.cued_by_v, real.hits),
        );
        eprintln!(
            "{}: dream at tau {tau}: {:.2} hits per 100 steps, first hit at {:.1}, {:.3} of hits after a near fireball; done drawn {:.3} in the 5 steps before a hit, {:.4} over all steps",
            policy.name(),
            100.0 * share(dream.onsets, 2 * dream.checked),
            mean_first_hit(&dream.first_hit),
            share(dream.cued, dream.onsets),
            share(dream.done_before.0, dream.done_before.1),
            share(dream.done_all, EPISODES * DREAM_STEPS),
        );
        // What the dream is judged against: in reality most hits come after a near fireball,
        // and V keeps that cue.
        assert!(
            share(real.cued, real.hits) > 0.5,
            "{}: {} of {} real hits follow a near fireball",
            policy.name(),
            real.cued,
            real.hits
        );
        assert!(share(real.cued_by_v, real.hits) >= 0.8 * share(real.cued, real.hits));
        hit_rates.push(real_rate);
    }
    assert!(
        hit_rates[1] < 0.5 * hit_rates[0],
        "the sweep is hit {:.2} times per 100 steps, standing still {:.2}",
        hit_rates[1],
        hit_rates[0]
    );
}
