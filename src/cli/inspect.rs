//! `dreamplay inspect`: a bundle's header as JSON, without loading any weights.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model::bundle;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle, e.g. models/take-cover/world-model.bin.
    pub file: PathBuf,
}

/// Prints `{"file", "bytes", "header"}`: the header holds the parts (precision, shapes, sizes,
/// checksums), the model's sizes and each part's provenance, C's with the dream it was evolved in.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let header = bundle::read_header(&args.file)?;
    let bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    let report = serde_json::json!({
        "file": args.file.display().to_string(),
        "bytes": bytes,
        "header": header,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
