//! Helpers shared by the test binaries that train small models.

use dreamplay::model::backend::FlexDevice;

/// The CPU device the training tests run on.
pub fn device() -> FlexDevice {
    Default::default()
}

/// A fresh scratch folder, `dreamplay-<suite>-<name>-*`, removed when the returned guard drops
/// (even on a failure).
pub fn scratch(suite: &str, name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dreamplay-{suite}-{name}-"))
        .tempdir()
        .expect("scratch folder")
}
