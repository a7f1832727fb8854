//! A fan of futures: many dreams forked from one state and stepped with the same actions, and the
//! two figures that describe what they show: how far they spread apart ([`pixel_spread`]) and how
//! sharp a frame is ([`sharpness`]). `dreamplay eval --futures` and `--open-loop` measure with
//! them, and the app draws the fan with them.

use std::ops::Range;

use burn::prelude::*;

use super::{DreamBatch, DreamError};
use crate::envs::Frame;

impl<B: Backend> DreamBatch<B> {
    /// Puts every row at the same state: the fork point of a fan of futures.
    pub fn fork_all(&mut self, z: &[f32], hidden: &[f32], cell: &[f32]) -> Result<(), DreamError> {
        self.fork_rows(0..self.batch_size(), z, hidden, cell)
    }

    /// Puts rows `rows` at the same state (one fan of several in a batch), restarting their
    /// episode counters; the other rows keep theirs. Checks every row first, so an error changes
    /// nothing.
    pub fn fork_rows(
        &mut self,
        rows: Range<usize>,
        z: &[f32],
        hidden: &[f32],
        cell: &[f32],
    ) -> Result<(), DreamError> {
        if let Some(last) = rows.clone().last() {
            self.check_index(last)?;
        }
        self.check_z(z)?;
        self.check_memory(hidden, cell)?;
        for i in rows {
            self.reset_to_state(i, z, hidden, cell)?;
        }
        Ok(())
    }
}

/// Per-pixel spread across futures (frames of equal size).
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub width: u32,
    pub height: u32,
    /// `[height * width]`, row-major: the standard deviation across the frames at each pixel.
    pub per_pixel: Vec<f32>,
    /// The mean of `per_pixel` (0 for no pixels).
    pub mean: f32,
}

/// Population standard deviation across `frames` per pixel (channels in [0,1], averaged), row-major.
///
/// Each channel's deviation is taken on its own and the three are averaged, so a change of colour
/// counts even where the brightness stays. Frames of unequal size are compared over the region
/// they share (the top-left corner); no frames give an empty spread.
pub fn pixel_spread(frames: &[Frame]) -> Spread {
    let width = frames.iter().map(|f| f.width()).min().unwrap_or(0);
    let height = frames.iter().map(|f| f.height()).min().unwrap_or(0);
    let n = frames.len() as u64;
    let mut per_pixel = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        for x in 0..width {
            let mut sd = 0.0f64;
            for c in 0..3 {
                // In whole numbers, so frames that agree give exactly 0:
                // n^2 var = n sum(v^2) - sum(v)^2.
                let (mut sum, mut sum_sq) = (0u64, 0u64);
                for frame in frames {
                    let v = u64::from(frame.get_pixel(x, y)[c]);
                    sum += v;
                    sum_sq += v * v;
                }
                let scaled = (n * sum_sq - sum * sum) as f64;
                sd += scaled.sqrt() / (n as f64 * 255.0);
            }
            per_pixel.push((sd / 3.0) as f32);
        }
    }
    let mean = if per_pixel.is_empty() {
        0.0
    } else {
        (per_pixel.iter().map(|&v| f64::from(v)).sum::<f64>() / per_pixel.len() as f64) as f32
    };
    Spread {
        width,
        height,
        per_pixel,
        mean,
    }
}

/// Mean absolute image-gradient magnitude of a frame, channels in [0,1].
///
/// The gradient at a pixel is its forward differences to the right and below,
/// sqrt(dx^2 + dy^2), per channel; the mean runs over every pixel that has both neighbours and
/// over the three channels. A flat frame, or one under 2x2, gives 0.
pub fn sharpness(frame: &Frame) -> f64 {
    let (w, h) = frame.dimensions();
    if w < 2 || h < 2 {
        return 0.0;
    }
    let mut sum = 0.0f64;
    for y in 0..h - 1 {
        for x in 0..w - 1 {
            let (here, right, below) = (
                frame.get_pixel(x, y),
                frame.get_pixel(x + 1, y),
                frame.get_pixel(x, y + 1),
            );
            for c in 0..3 {
                let dx = (f64::from(right[c]) - f64::from(here[c])) / 255.0;
                let dy = (f64::from(below[c]) - f64::from(here[c])) / 255.0;
                sum += (dx * dx + dy * dy).sqrt();
            }
        }
    }
    sum / f64::from(3 * (w - 1) * (h - 1))
}

/// Mean absolute difference per pixel and channel between two frames, in [0,1], over the region
/// they share.
pub fn pixel_error(a: &Frame, b: &Frame) -> f64 {
    let w = a.width().min(b.width());
    let h = a.height().min(b.height());
    if w == 0 || h == 0 {
        return 0.0;
    }
    let mut sum = 0u64;
    for y in 0..h {
        for x in 0..w {
            let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
            for c in 0..3 {
                sum += u64::from(p[c].abs_diff(q[c]));
            }
        }
    }
    sum as f64 / (255.0 * 3.0 * f64::from(w) * f64::from(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: u8) -> Frame {
        Frame::from_pixel(4, 3, image::Rgb([v, v, v]))
    }

    #[test]
    fn identical_frames_do_not_spread() {
        let frame = Frame::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 7]));
        let spread = pixel_spread(&[frame.clone(), frame.clone(), frame]);
        assert_eq!((spread.width, spread.height), (8, 8));
        assert_eq!(spread.per_pixel.len(), 64);
        assert!(spread.per_pixel.iter().all(|&v| v == 0.0));
        assert_eq!(spread.mean, 0.0);
    }

    /// Black and white: each pixel is 0 or 1, so its population sd is 0.5. One channel of three
    /// apart by 1 gives 0.5 / 3.
    #[test]
    fn two_known_frames_spread_by_their_known_deviation() {
        let spread = pixel_spread(&[flat(0), flat(255)]);
        assert_eq!(spread.per_pixel.len(), 12);
        assert!(spread.per_pixel.iter().all(|&v| (v - 0.5).abs() < 1e-6));
        assert!((spread.mean - 0.5).abs() < 1e-6);

        let red = Frame::from_pixel(2, 2, image::Rgb([255, 0, 0]));
        let black = Frame::from_pixel(2, 2, image::Rgb([0, 0, 0]));
        let spread = pixel_spread(&[red, black]);
        assert!((spread.mean - 0.5 / 3.0).abs() < 1e-6, "{}", spread.mean);
    }

    #[test]
    fn no_frames_and_unequal_frames_do_not_panic() {
        let empty = pixel_spread(&[]);
        assert_eq!((empty.width, empty.height, empty.mean), (0, 0, 0.0));
        let spread = pixel_spread(&[
            flat(0),
            Frame::from_pixel(2, 5, image::Rgb([255, 255, 255])),
        ]);
        assert_eq!((spread.width, spread.height), (2, 3));
        assert!((spread.mean - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_flat_frame_has_no_sharpness_and_an_edge_has_some() {
        assert_eq!(sharpness(&flat(120)), 0.0);
        assert_eq!(sharpness(&Frame::new(1, 1)), 0.0);
        // A vertical edge between columns 1 and 2 of a 4x3 frame: 2 of the 3x2 pixels measured
        // see a step of 1 in every channel.
        let edge = Frame::from_fn(4, 3, |x, _| {
            let v = if x < 2 { 0 } else { 255 };
            image::Rgb([v, v, v])
        });
        assert!(
            (sharpness(&edge) - 2.0 / 6.0).abs() < 1e-12,
            "{}",
            sharpness(&edge)
        );
    }

    #[test]
    fn pixel_error_is_the_mean_absolute_difference() {
        assert_eq!(pixel_error(&flat(0), &flat(0)), 0.0);
        assert!((pixel_error(&flat(0), &flat(255)) - 1.0).abs() < 1e-12);
        assert!((pixel_error(&flat(0), &flat(51)) - 0.2).abs() < 1e-12);
    }
}
