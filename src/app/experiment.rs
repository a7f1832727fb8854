//! The paper's Table 2 in the playground: every C of the current env's bundle scored in the dream
//! it was evolved in and in reality ([`paper_table`]), run on a background thread so that the app
//! stays responsive, and polled each frame into the [`Experiment`] resource, which a panel draws.
//!
//! `PlayCommand::RunTable { episodes }` starts a run on the bundle in `ModelSource.models_dir` for
//! the session's env, on the CPU backend (flex), seed 0: the rows equal
//! `dreamplay eval --env <env> --table --episodes <episodes>`'s. `PlayCommand::CancelTable` stops
//! it within a step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use bevy::prelude::*;

use super::AppSystems;
use super::commands::PlayCommand;
use super::sim::{ModelSource, Notice, Session};
use super::world_model::model_path;
use crate::envs::EnvKind;
use crate::model::FlexBackend;
use crate::train::eval::Cancelled;
use crate::train::table::{TableConfig, TableRow, paper_table};

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Experiment>();
    app.add_systems(
        Update,
        start_or_cancel_table.in_set(AppSystems::ApplyCommands),
    );
    app.add_systems(Update, poll_table.in_set(AppSystems::Update));
}

/// Where the table's run stands.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ExperimentState {
    /// Never run, or cancelled.
    #[default]
    Idle,
    /// `done` of `total` episodes (dreams and real episodes together) have finished.
    Running { done: usize, total: usize },
    /// One row per C, the default C first.
    Finished(Vec<TableRow>),
    /// Why the run stopped, e.g. no model for this env.
    Failed(String),
}

/// The paper's table, run in the background: what the panel shows and its progress bar.
#[derive(Resource, Default)]
pub struct Experiment {
    pub state: ExperimentState,
    /// The env whose bundle the last run scored.
    pub env: Option<EnvKind>,
    /// Episodes per C, in the dream and in reality, of the last run.
    pub episodes: usize,
    job: Option<Job>,
}

impl Experiment {
    pub fn is_running(&self) -> bool {
        matches!(self.state, ExperimentState::Running { .. })
    }
}

/// A run on its thread: its result, its progress counters and its cancel flag.
struct Job {
    handle: Option<JoinHandle<anyhow::Result<Vec<TableRow>>>>,
    cancel: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Job {
    fn start(config: TableConfig) -> std::io::Result<Self> {
        let cancel = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let (flag, done_count, total_count) = (cancel.clone(), done.clone(), total.clone());
        let handle = std::thread::Builder::new()
            .name("paper-table".into())
            .spawn(move || {
                let device = Default::default();
                let progress = |d: usize, t: usize| {
                    done_count.store(d, Ordering::Relaxed);
                    total_count.store(t, Ordering::Relaxed);
                };
                paper_table::<FlexBackend>(&config, &device, &progress, &flag)
            })?;
        Ok(Self {
            handle: Some(handle),
            cancel,
            done,
            total,
        })
    }
}

impl Drop for Job {
    /// A run nobody waits for stops within a step (a cancel, or the app closing).
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

fn start_or_cancel_table(
    mut commands: MessageReader<PlayCommand>,
    mut experiment: ResMut<Experiment>,
    session: Res<Session>,
    source: Res<ModelSource>,
    mut notice: ResMut<Notice>,
) {
    for command in commands.read() {
        match command {
            PlayCommand::RunTable { episodes } => {
                if experiment.is_running() {
                    notice.show("The table is already running: cancel it first");
                    continue;
                }
                let env = session.env;
                let config = TableConfig {
                    episodes: (*episodes).max(1),
                    ..TableConfig::new(env, model_path(&source.models_dir, env))
                };
                experiment.env = Some(env);
                experiment.episodes = config.episodes;
                match Job::start(config) {
                    Ok(job) => {
                        experiment.job = Some(job);
                        experiment.state = ExperimentState::Running { done: 0, total: 0 };
                    }
                    Err(err) => {
                        experiment.state =
                            ExperimentState::Failed(format!("cannot start the table's run: {err}"))
                    }
                }
            }
            PlayCommand::CancelTable if experiment.job.is_some() => {
                experiment.job = None;
                experiment.state = ExperimentState::Idle;
                notice.show("The table's run is cancelled");
            }
            _ => {}
        }
    }
}

/// Copies the run's progress into the state, and its rows (or why it failed) once it ends.
fn poll_table(mut experiment: ResMut<Experiment>) {
    let Some(job) = experiment.job.as_mut() else {
        return;
    };
    let finished = job.handle.as_ref().is_none_or(|h| h.is_finished());
    if !finished {
        let (done, total) = (
            job.done.load(Ordering::Relaxed),
            job.total.load(Ordering::Relaxed),
        );
        experiment.state = ExperimentState::Running { done, total };
        return;
    }
    let outcome = job.handle.take().map(JoinHandle::join);
    experiment.job = None;
    experiment.state = match outcome {
        Some(Ok(Ok(rows))) => ExperimentState::Finished(rows),
        Some(Ok(Err(err))) if err.is::<Cancelled>() => ExperimentState::Idle,
        Some(Ok(Err(err))) => ExperimentState::Failed(format!("{err:#}")),
        Some(Err(_)) | None => {
            ExperimentState::Failed("the table's run stopped unexpectedly".to_string())
        }
    };
}
