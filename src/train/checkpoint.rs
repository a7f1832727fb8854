//! Checkpoints shared by the gradient-trained stages (V, M): weights, Adam's state and a
//! `state.json` that names the last complete checkpoint.

use std::path::Path;

use anyhow::Context;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::Optimizer;
use burn::prelude::{Backend, Tensor};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::progress;
use crate::model::bundle::{self, Precision, WorldModel};
use crate::model::flow::{FlowModel, file as flow_file};

/// What a checkpoint's weights file holds: a bundle for V and M, a flow-model file for the flow
/// model's stages. Always f32, so a resumed run starts from the exact weights. A stage may write
/// more files beside `path` (the decoder's critic).
pub trait CheckpointWeights {
    fn save_f32(&self, path: &Path) -> anyhow::Result<()>;
}

impl<B: Backend> CheckpointWeights for WorldModel<B> {
    fn save_f32(&self, path: &Path) -> anyhow::Result<()> {
        Ok(bundle::save(self, path, Precision::F32)?)
    }
}

impl<B: Backend> CheckpointWeights for FlowModel<B> {
    fn save_f32(&self, path: &Path) -> anyhow::Result<()> {
        Ok(flow_file::save(self, path, Precision::F32)?)
    }
}

/// The weights in a checkpoint folder.
pub const MODEL_FILE: &str = "weights.bin";
/// Adam's state in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "adam.bin";
/// Where a stage stands, in the stage folder.
pub const STATE_FILE: &str = "state.json";
/// The weights' burn parameter ids, in visit order.
pub const PARAM_IDS_FILE: &str = "param-ids.json";

/// The module's parameter ids in visit order.
pub fn param_ids<B: Backend, M: Module<B>>(module: &M) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id.val());
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// Gives the module's parameters the ids saved with a checkpoint. Adam's state is keyed by
/// parameter id, and our weights file stores values only, so without this a resumed run would
/// find no state for any parameter and restart Adam from zero (a loss spike at every resume).
pub fn restore_param_ids<B: Backend, M: Module<B>>(
    module: M,
    checkpoint_dir: &Path,
) -> anyhow::Result<M> {
    let path = checkpoint_dir.join(PARAM_IDS_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let ids: Vec<u64> =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))?;
    let n = param_ids::<B, M>(&module).len();
    if ids.len() != n {
        anyhow::bail!(
            "{} holds {} ids for {n} parameters",
            path.display(),
            ids.len()
        );
    }
    struct Setter(std::vec::IntoIter<u64>);
    impl<B: Backend> ModuleMapper<B> for Setter {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let id = self.0.next().map_or(id, ParamId::from);
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    Ok(module.map(&mut Setter(ids.into_iter())))
}

/// A stage's starting point: with `fresh`, its checkpoints are cleared and `None` is returned;
/// otherwise its `state.json` if any, which must have been started with `fingerprint` (the options
/// and inputs a resume must share; `fingerprint_of` reads it from the state).
pub fn start_or_resume<S: DeserializeOwned>(
    stage_dir: &Path,
    fresh: bool,
    fingerprint: &str,
    fingerprint_of: impl Fn(&S) -> &str,
) -> anyhow::Result<Option<S>> {
    if fresh {
        clear(stage_dir)?;
        return Ok(None);
    }
    let path = stage_dir.join(STATE_FILE);
    let state: Option<S> = read_state(&path)?;
    if let Some(s) = &state
        && fingerprint_of(s) != fingerprint
    {
        anyhow::bail!(
            "{} was started with different options or inputs ({}); now: {fingerprint}. Pass --fresh to start over, or the same options to resume",
            path.display(),
            fingerprint_of(s)
        );
    }
    Ok(state)
}

/// Reads a stage's `state.json`; `None` when there is none (a fresh run).
pub fn read_state<S: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<S>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is corrupt; pass --fresh to start over", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes checkpoint folder `name` under `stage_dir` (the weights as a bundle, Adam's state),
/// then `state.json`, then removes the `previous` checkpoint folder. `state.json` comes last, so
/// it only ever names a complete checkpoint.
pub fn save<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>, S: Serialize>(
    stage_dir: &Path,
    name: &str,
    module: &M,
    weights: &impl CheckpointWeights,
    optim: &O,
    state: &S,
    previous: Option<&str>,
) -> anyhow::Result<()> {
    let dir = stage_dir.join(name);
    weights.save_f32(&dir.join(MODEL_FILE))?;
    save_optimizer::<B, M, O>(optim, &dir.join(OPTIMIZER_FILE))?;
    let ids =
        serde_json::to_vec(&param_ids::<B, M>(module)).context("cannot serialise parameter ids")?;
    progress::write_atomic(&dir.join(PARAM_IDS_FILE), &ids)
        .with_context(|| format!("cannot write {}", dir.join(PARAM_IDS_FILE).display()))?;
    let json = serde_json::to_vec_pretty(state).context("cannot serialise the training state")?;
    let state_path = stage_dir.join(STATE_FILE);
    progress::write_atomic(&state_path, &json)
        .with_context(|| format!("cannot write {}", state_path.display()))?;
    if let Some(prev) = previous
        && prev != name
    {
        let _ = std::fs::remove_dir_all(stage_dir.join(prev));
    }
    Ok(())
}

/// Adam's state as bytes via burn's recorder, written atomically.
pub(crate) fn save_optimizer<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    optim: &O,
    path: &Path,
) -> anyhow::Result<()> {
    save_record::<B, _>(optim.to_record(), path)
}

/// Restores Adam's state; an unreadable file is an error, and the caller then restarts Adam from
/// zero rather than losing the run.
pub(crate) fn load_optimizer<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    optim: O,
    path: &Path,
    device: &B::Device,
) -> Result<O, String> {
    load_record::<B, _>(path, device)
        .map(|record| optim.load_record(record))
        .map_err(|e| format!("{e:#}"))
}

/// A burn record (a module's weights, an optimiser's state) as bytes via burn's recorder, in full
/// precision, written atomically.
pub(crate) fn save_record<B: Backend, R: Record<B>>(record: R, path: &Path) -> anyhow::Result<()> {
    let bytes = BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(record, ())
        .map_err(|e| anyhow::anyhow!("cannot serialise {}: {e:?}", path.display()))?;
    progress::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a record [`save_record`] wrote. burn's recorder panics on malformed bytes, so the panic
/// is caught and named as the file's fault.
pub(crate) fn load_record<B: Backend, R: Record<B>>(
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<R> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let device = device.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        BinBytesRecorder::<FullPrecisionSettings>::default().load(bytes, &device)
    }))
    .map_err(|_| anyhow::anyhow!("{} is corrupt", path.display()))?
    .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))
}

/// Removes every `checkpoint-*` folder and the state file of a stage, for a `--fresh` start (a
/// fresh run would otherwise leave the old run's last checkpoint behind for good).
pub fn clear(stage_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(stage_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_checkpoint = path.is_dir()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("checkpoint-"));
        if is_checkpoint {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let state = stage_dir.join(STATE_FILE);
    if state.exists() {
        std::fs::remove_file(&state)
            .with_context(|| format!("cannot remove {}", state.display()))?;
    }
    Ok(())
}
