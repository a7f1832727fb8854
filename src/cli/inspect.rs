//! `dreamplay inspect`: a bundle's or a flow model's header as JSON, without loading any weights.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::model::bundle::{self, Part};
use crate::model::flow::file as flow_file;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle, e.g. models/take-cover/world-model.bin, or the flow model beside it.
    pub file: PathBuf,
}

/// Prints `{"file", "bytes", "header"}` (and `"latent_map": {"points"}` when the bundle has a
/// map, `"controllers"` when it has a C): the header holds the parts (precision, shapes, sizes,
/// checksums), the model's sizes, each part's provenance, C's with the dream it was evolved in,
/// the extra Cs, and V's latent statistics. `"controllers"` lists every C by number (0: the
/// default), name and dream, as `eval --controller` and `eval --table` know them. A flow model
/// prints `{"file", "bytes", "header"}` with its sizes, latent statistics, parts and provenance.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    if flow_file::looks_like_flow_model(&args.file) {
        let header = flow_file::read_header(&args.file)?;
        let report = report(&args.file, &header)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let header = bundle::read_header(&args.file)?;
    let mut report = report(&args.file, &header)?;
    // The map's point count, read off its shapes (the points' z is its fourth tensor, [N, Z]).
    if let Some(entry) = header.parts.iter().find(|p| p.part == Part::LatentMap) {
        let points = entry.shapes.get(3).and_then(|s| s.first()).copied();
        report["latent_map"] = serde_json::json!({ "points": points });
    }
    let names = header.controller_names();
    if !names.is_empty() {
        let dream = |i: usize| match i {
            0 if header.has(Part::Controller) => {
                header.provenance.controller.as_ref().and_then(|c| c.dream)
            }
            _ => header
                .extra_controllers
                .iter()
                .find(|c| c.name == names[i])
                .and_then(|c| c.training.dream),
        };
        let list: Vec<serde_json::Value> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let dream = serde_json::to_string(&dream(i)).unwrap_or_default();
                serde_json::json!({
                    "index": i,
                    "name": name,
                    "dream": serde_json::from_str::<serde_json::Value>(&dream).unwrap_or_default(),
                })
            })
            .collect();
        report["controllers"] = serde_json::Value::Array(list);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `{"file", "bytes", "header"}`. The header goes through text, so its f32 values print as the
/// file has them (not widened to f64).
fn report(file: &Path, header: &impl serde::Serialize) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let header: serde_json::Value = serde_json::from_str(&serde_json::to_string(header)?)?;
    Ok(serde_json::json!({
        "file": file.display().to_string(),
        "bytes": bytes,
        "header": header,
    }))
}
