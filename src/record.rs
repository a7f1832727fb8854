//! Recording frames to an animated GIF.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, DynamicImage};

use crate::envs::Frame;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write a frame to {path}: {source}")]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// Writes frames to a looping GIF as they come, so a long recording never sits in memory.
pub struct GifRecorder {
    path: PathBuf,
    encoder: GifEncoder<BufWriter<File>>,
    delay: Delay,
    frames: usize,
}

impl GifRecorder {
    /// `fps` is the playback rate; GIF delays have a 10 ms resolution, so 50 fps plays exactly
    /// and 35 fps plays at 33.
    pub fn create(path: &Path, fps: u32) -> Result<Self, RecordError> {
        let file = File::create(path).map_err(|source| RecordError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        // Speed 10 of 30: quantising well matters more than encoding fast for a handful of clips.
        let mut encoder = GifEncoder::new_with_speed(BufWriter::new(file), 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|source| RecordError::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        let delay = Delay::from_numer_denom_ms(1000, fps.max(1));
        Ok(Self {
            path: path.to_path_buf(),
            encoder,
            delay,
            frames: 0,
        })
    }

    pub fn push(&mut self, frame: &Frame) -> Result<(), RecordError> {
        let rgba = DynamicImage::ImageRgb8(frame.clone()).into_rgba8();
        self.encoder
            .encode_frame(image::Frame::from_parts(rgba, 0, 0, self.delay))
            .map_err(|source| RecordError::Encode {
                path: self.path.clone(),
                source,
            })?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
