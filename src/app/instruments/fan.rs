//! The futures fan: N dreams forked from one state and stepped together with the same actions, of
//! the family that dreams. For the 2018 model what they disagree on is the MDN-RNN's
//! stochasticity, which tau scales; for the flow model it is the sampler's noise, which its
//! temperature scales.

use bevy::prelude::*;

use super::super::commands::{Instrument, Mode};
use super::super::sim::{Reality, Session, Timings, millis};
use super::super::world_model::{DreamFamily, View, WorldModelRuntime};
use super::{Instruments, source_view};
use crate::dream::{Spread, pixel_spread};
use crate::envs::Frame;

/// The fan as it stands.
#[derive(Resource, Debug, Clone, Default)]
pub struct FuturesFan {
    /// Each future's frame, decoded as one batch.
    pub frames: Vec<Frame>,
    /// Reality's own continuation from the fork (V's 64x64 input), when reality steps.
    pub reality: Option<Frame>,
    /// The per-pixel spread across the futures.
    pub spread: Option<Spread>,
    /// The spread as a heat map, made once per step for the panel.
    pub heat: Option<Frame>,
    /// Steps since the fork.
    pub steps: u32,
    /// Forks since the app started.
    pub forks: u32,
    /// Whose state the fan forked from.
    pub from: Option<View>,
    /// Which world model dreams the futures.
    pub family: Option<DreamFamily>,
    /// Bumped whenever the frames change, so the panel re-uploads only then.
    pub generation: u64,
    /// The sim step the fan last followed.
    seen_step: u64,
    /// The source's step count at the last look: a smaller one means its episode restarted.
    source_steps: u32,
    /// Why the fan could not run (no model, a failing one), shown in its panel.
    pub problem: Option<String>,
}

impl FuturesFan {
    fn clear(&mut self) {
        self.frames.clear();
        self.reality = None;
        self.spread = None;
        self.heat = None;
        self.steps = 0;
        self.from = None;
        self.family = None;
        self.generation += 1;
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn follow_sim(
    instruments: Res<Instruments>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    reality: Res<Reality>,
    dream: Res<super::super::sim::DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut fan: ResMut<FuturesFan>,
    mut timings: ResMut<Timings>,
) {
    if !instruments.is_open(Instrument::Futures) {
        if !fan.frames.is_empty() {
            fan.clear();
        }
        return;
    }
    let Some(runner) = runtime.runner.as_deref_mut() else {
        fan.problem = Some(runtime.status.explanation());
        return;
    };
    let from = source_view(*mode.get(), session.family);
    // The latent explorer edits the 2018 dream's z, so its fan is that model's.
    let family = match from {
        View::Dream => DreamFamily::MdnRnn,
        View::Reality | View::FlowDream => session.family,
    };
    let source_steps = match from {
        View::Reality => reality.steps(),
        View::Dream | View::FlowDream => dream.steps,
    };
    let stepped = session.steps_taken != fan.seen_step;
    fan.seen_step = session.steps_taken;
    let restarted = source_steps < fan.source_steps;
    fan.source_steps = source_steps;
    let must_fork = fan.frames.is_empty()
        || fan.frames.len() != instruments.fan_size
        || fan.from != Some(from)
        || fan.family != Some(family)
        || fan.steps >= instruments.fan_horizon
        || restarted
        || (from != View::Reality && !dream.forked);
    if !must_fork && !stepped {
        return;
    }
    let started = std::time::Instant::now();
    let result = (|| -> anyhow::Result<Vec<Frame>> {
        if must_fork {
            if from == View::Reality {
                // The memory that follows reality has h for this frame; z must be this frame's too.
                runner.observe_reality(&reality.obs)?;
            }
            runner.fork_futures(instruments.fan_size, from, family)?;
        } else {
            runner.step_futures(&session.last_action, session.tau)?;
        }
        runner.futures_frames()
    })();
    match result {
        Ok(frames) => {
            timings.instrument.push(millis(started.elapsed()));
            if must_fork {
                fan.steps = 0;
                fan.forks += 1;
            } else {
                fan.steps += 1;
            }
            let spread = pixel_spread(&frames);
            fan.heat = Some(heat_map(&spread, SPREAD_FULL_SCALE));
            fan.spread = Some(spread);
            fan.frames = frames;
            fan.from = Some(from);
            fan.family = Some(family);
            fan.reality = (from == View::Reality).then(|| reality.obs.clone());
            fan.problem = None;
            fan.generation += 1;
        }
        Err(err) => {
            fan.problem = Some(format!("{err:#}"));
            fan.frames.clear();
        }
    }
}

/// Where the spread's heat map saturates (a channel sd of 0.25 is two futures a half apart).
pub const SPREAD_FULL_SCALE: f32 = 0.25;

/// The spread as a heat map: black (the futures agree) through red to yellow (they differ by
/// `full_scale` or more, in [0, 1] channel units).
pub fn heat_map(spread: &Spread, full_scale: f32) -> Frame {
    Frame::from_fn(spread.width, spread.height, |x, y| {
        let value = spread.per_pixel[(y * spread.width + x) as usize];
        let t = (value / full_scale.max(1e-6)).clamp(0.0, 1.0);
        let channel = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([
            channel(t * 2.0),
            channel(t * 2.0 - 1.0),
            channel(t * 4.0 - 3.0),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_map_is_black_where_futures_agree_and_bright_where_they_differ() {
        let spread = Spread {
            width: 2,
            height: 1,
            per_pixel: vec![0.0, 0.5],
            mean: 0.25,
        };
        let heat = heat_map(&spread, 0.25);
        assert_eq!(heat.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(heat.get_pixel(1, 0).0, [255, 255, 255]);
    }
}
