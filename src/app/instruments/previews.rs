//! What each action would do: from the paused state, a few named actions each held for K steps in
//! M, side by side: the next frame and the frame K steps on. Action conditioning, made visible.

use bevy::prelude::*;

use super::super::commands::{Instrument, Mode};
use super::super::sim::{DreamEpisode, Reality, Session, SimState};
use super::super::world_model::{View, WorldModelRuntime};
use super::{Instruments, source_view};
use crate::agent::scripted::named_actions;
use crate::envs::Frame;

/// One action's preview.
#[derive(Debug, Clone)]
pub struct ActionPreview {
    pub name: &'static str,
    pub action: Vec<f32>,
    /// The dream's frame one step on.
    pub next: Frame,
    /// And K steps on.
    pub later: Frame,
}

/// The previews for the paused state.
#[derive(Resource, Debug, Clone, Default)]
pub struct ActionPreviews {
    pub items: Vec<ActionPreview>,
    /// K, as computed.
    pub steps: usize,
    pub from: Option<View>,
    pub generation: u64,
    pub problem: Option<String>,
    /// What they were computed from: (reality generation, dream generation, K, tau bits, view).
    seen: Option<(u64, u64, usize, u32, View)>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn refresh_previews(
    instruments: Res<Instruments>,
    session: Res<Session>,
    mode: Res<State<Mode>>,
    sim_state: Res<State<SimState>>,
    reality: Res<Reality>,
    dream: Res<DreamEpisode>,
    mut runtime: ResMut<WorldModelRuntime>,
    mut previews: ResMut<ActionPreviews>,
) {
    // While the sim runs the state moves every step; the previews are for a still moment.
    if !instruments.is_open(Instrument::Actions) || *sim_state.get() != SimState::Paused {
        return;
    }
    let from = source_view(*mode.get(), session.family);
    let key = (
        reality.generation,
        dream.generation,
        instruments.preview_steps,
        session.tau.to_bits(),
        from,
    );
    if previews.seen == Some(key) {
        return;
    }
    previews.seen = Some(key);
    let Some(runner) = runtime.runner.as_deref_mut() else {
        previews.items.clear();
        previews.problem = Some(runtime.status.explanation());
        return;
    };
    if from != View::Reality && !dream.forked {
        previews.items.clear();
        previews.problem = Some("No dream yet: fork one first.".into());
        return;
    }
    let named = named_actions(session.env);
    let actions: Vec<Vec<f32>> = named.iter().map(|(_, a)| a.clone()).collect();
    let result = (|| {
        if from == View::Reality {
            runner.observe_reality(&reality.obs)?;
        }
        runner.preview_actions(from, &actions, instruments.preview_steps, session.tau)
    })();
    match result {
        Ok(frames) => {
            previews.items = named
                .into_iter()
                .zip(frames)
                .map(|((name, action), [next, later])| ActionPreview {
                    name,
                    action,
                    next,
                    later,
                })
                .collect();
            previews.problem = None;
        }
        Err(err) => {
            previews.items.clear();
            previews.problem = Some(format!("{err:#}"));
        }
    }
    previews.steps = instruments.preview_steps;
    previews.from = Some(from);
    previews.generation += 1;
}
