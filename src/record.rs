//! Recording frames to an animated GIF that stays small enough for a slide.
//!
//! Three things keep the file small, and the encoder fast enough for 50 frames a second on one
//! thread:
//! - **One palette** for the whole file, quantised once from the first frame (NeuQuant) next to a
//!   coarse fixed colour cube that catches colours that appear later. Index 0 is kept for
//!   transparency.
//! - **A lookup table** from colour (6 bits a channel) to palette index, filled as colours first
//!   appear, so mapping a frame is one table read a pixel.
//! - **Frame differencing**: after the first, a frame holds only the rectangle around the pixels
//!   that changed since the frames before; the unchanged pixels inside it are transparent, so what
//!   was shown stays and LZW packs them as long runs. A pixel counts as changed when its palette
//!   index changed and its colour moved more than [`UNCHANGED_DISTANCE`] from the one shown: a
//!   textured floor sliding past otherwise changes nearly every pixel by a little.
//!
//! Playback keeps the recording's own rate on average: GIF delays count in hundredths of a
//! second, so at 35 frames a second the delays alternate between 2 and 3 hundredths.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use gif::{DisposalMethod, Encoder, Repeat};

use crate::envs::Frame;

/// The palette index no colour maps to: unchanged pixels, shown through from the frame before.
const TRANSPARENT_INDEX: u8 = 0;
/// Levels per channel of the fixed colour cube (4: 0, 85, 170, 255; 64 colours).
const CUBE_LEVELS: usize = 4;
/// Colours quantised from the first frame: the 256 a GIF palette holds, less the transparent
/// index and the cube.
const ADAPTIVE_COLORS: usize = 256 - 1 - CUBE_LEVELS * CUBE_LEVELS * CUBE_LEVELS;
/// NeuQuant's sampling factor, 1 (every pixel, best) to 30 (fastest): it runs once a recording.
const NEUQUANT_SAMPLE_FACTOR: i32 = 3;
/// Bits per channel the lookup table keys on: 6 gives 2^18 cells, each within 2 levels of the
/// colours it stands for.
const LOOKUP_BITS: u32 = 6;
/// A lookup cell not filled yet.
const LOOKUP_EMPTY: u8 = TRANSPARENT_INDEX;
/// A pixel keeps the colour shown while its new colour lies within this distance of it (in RGB,
/// 0-255 a channel): a moving texture's small ripples then stay transparent. At 16, 30 s of Take
/// Cover's textured room at half rate took 6.5 MB, against 15.4 MB at 0; no pixel then shows a
/// colour further than 16 from its own, unless the palette has none nearer (`docs/benchmarks.md`).
const UNCHANGED_DISTANCE: u32 = 16;
/// GIF delays are in hundredths of a second; browsers play shorter ones than 2 as 10.
const DELAY_MIN_CENTISECONDS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a GIF's frame rate must be a positive number of frames a second, not {fps}")]
    FrameRate { fps: f64 },
    #[error("cannot write a {width}x{height} frame to {path}: a GIF's sides are 1 to 65535 pixels")]
    FrameSideOutOfRange {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error(
        "cannot write a {width}x{height} frame to {path}: its frames are {expected_width}x{expected_height}"
    )]
    FrameSize {
        path: PathBuf,
        width: u32,
        height: u32,
        expected_width: u32,
        expected_height: u32,
    },
    #[error("cannot write to {path}: {source}")]
    Encode {
        path: PathBuf,
        source: gif::EncodingError,
    },
    #[error("cannot write to {path}: an earlier write failed")]
    Failed { path: PathBuf },
}

/// Writes frames to a looping GIF as they come, so a long recording never sits in memory.
pub struct GifRecorder {
    path: PathBuf,
    output: Output,
    /// Frames per second of playback.
    fps: f64,
    frames: usize,
    /// Playback time of the frames written so far, in hundredths of a second.
    elapsed_centiseconds: u64,
}

/// Where the recorder is in the file.
enum Output {
    /// The file is open; the first frame sets the size and the palette.
    Opened(BufWriter<File>),
    Writing(Box<Encoding>),
    /// A write failed, or the file was finished.
    Closed,
}

/// The file after its first frame.
struct Encoding {
    encoder: Encoder<BufWriter<File>>,
    palette: Palette,
    width: u32,
    height: u32,
    /// The palette index each pixel shows after the frames written so far.
    shown: Vec<u8>,
    /// The frame being written, as the palette index of each pixel that changed and
    /// [`TRANSPARENT_INDEX`] where it did not (kept to save an allocation a frame).
    changes: Vec<u8>,
}

impl GifRecorder {
    /// Creates the file; `fps` is the playback rate in frames a second and need not be whole
    /// (35 Hz recorded every second step: 17.5).
    pub fn create(path: &Path, fps: f64) -> Result<Self, RecordError> {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(RecordError::FrameRate { fps });
        }
        let file = File::create(path).map_err(|source| RecordError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            output: Output::Opened(BufWriter::new(file)),
            fps,
            frames: 0,
            elapsed_centiseconds: 0,
        })
    }

    /// Appends one frame; every frame must have the first one's size.
    pub fn push(&mut self, frame: &Frame) -> Result<(), RecordError> {
        // A frame of the wrong size is refused before anything is written, so the file goes on.
        if let Output::Writing(encoding) = &self.output {
            encoding.check_size(frame, &self.path)?;
        }
        let delay = self.next_delay();
        let written = match std::mem::replace(&mut self.output, Output::Closed) {
            Output::Opened(file) => Encoding::start(file, frame, delay, &self.path)
                .map(|encoding| Output::Writing(Box::new(encoding))),
            Output::Writing(mut encoding) => encoding
                .write(frame, delay, &self.path)
                .map(|()| Output::Writing(encoding)),
            Output::Closed => Err(RecordError::Failed {
                path: self.path.clone(),
            }),
        };
        // After a failed write the file stays closed: later frames report it rather than write
        // a file with a gap.
        self.output = written?;
        self.elapsed_centiseconds += u64::from(delay);
        self.frames += 1;
        Ok(())
    }

    /// Writes the GIF's end and flushes the file; returns the frames written. A recorder that is
    /// dropped instead ends its file too, but cannot report a failed write.
    pub fn finish(mut self) -> Result<usize, RecordError> {
        let encode_error = |source| RecordError::Encode {
            path: self.path.clone(),
            source,
        };
        let file = match std::mem::replace(&mut self.output, Output::Closed) {
            Output::Writing(encoding) => encoding.encoder.into_inner().map_err(encode_error)?,
            // No frames: a valid GIF with none, on a 1x1 screen.
            Output::Opened(file) => Encoder::new(file, 1, 1, &[0, 0, 0])
                .and_then(Encoder::into_inner)
                .map_err(encode_error)?,
            Output::Closed => {
                return Err(RecordError::Failed {
                    path: self.path.clone(),
                });
            }
        };
        file.into_inner()
            .map_err(|err| err.into_error())
            .and_then(|mut file| file.flush())
            .map_err(|source| encode_error(source.into()))?;
        Ok(self.frames)
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next frame's delay in hundredths of a second: whatever keeps the playback time of all
    /// frames so far closest to `frames / fps`.
    fn next_delay(&self) -> u16 {
        let end = ((self.frames + 1) as f64 * 100.0 / self.fps).round() as u64;
        let delay = end
            .saturating_sub(self.elapsed_centiseconds)
            .clamp(DELAY_MIN_CENTISECONDS, u64::from(u16::MAX));
        // Clamped to a u16 above.
        delay as u16
    }
}

impl Encoding {
    /// Quantises the palette from `frame`, writes the header and `frame` whole.
    fn start(
        file: BufWriter<File>,
        frame: &Frame,
        delay: u16,
        path: &Path,
    ) -> Result<Self, RecordError> {
        let (width, height) = frame.dimensions();
        let out_of_range = || RecordError::FrameSideOutOfRange {
            path: path.to_path_buf(),
            width,
            height,
        };
        let side = |pixels| u16::try_from(pixels).ok().filter(|&side| side > 0);
        let gif_width = side(width).ok_or_else(out_of_range)?;
        let gif_height = side(height).ok_or_else(out_of_range)?;
        let encode_error = |source| RecordError::Encode {
            path: path.to_path_buf(),
            source,
        };
        let mut palette = Palette::from_frame(frame);
        let mut encoder =
            Encoder::new(file, gif_width, gif_height, &palette.rgb()).map_err(encode_error)?;
        encoder.set_repeat(Repeat::Infinite).map_err(encode_error)?;
        let shown: Vec<u8> = frame.pixels().map(|p| palette.index_of(p.0)).collect();
        let mut first = gif::Frame::from_indexed_pixels(gif_width, gif_height, shown.clone(), None);
        first.delay = delay;
        first.dispose = DisposalMethod::Keep;
        encoder.write_frame(&first).map_err(encode_error)?;
        Ok(Self {
            encoder,
            palette,
            width,
            height,
            shown,
            changes: Vec::new(),
        })
    }

    /// Frames after the first must have its size.
    fn check_size(&self, frame: &Frame, path: &Path) -> Result<(), RecordError> {
        let (width, height) = frame.dimensions();
        if (width, height) == (self.width, self.height) {
            return Ok(());
        }
        Err(RecordError::FrameSize {
            path: path.to_path_buf(),
            width,
            height,
            expected_width: self.width,
            expected_height: self.height,
        })
    }

    /// Writes the rectangle of `frame` that changed since the last frame, unchanged pixels
    /// transparent.
    fn write(&mut self, frame: &Frame, delay: u16, path: &Path) -> Result<(), RecordError> {
        self.check_size(frame, path)?;
        let width = self.width;
        self.changes.clear();
        for (pixel, &shown) in frame.pixels().zip(&self.shown) {
            let new = self.palette.index_of(pixel.0);
            let kept = new == shown
                || distance_squared(self.palette.colors[usize::from(shown)], pixel.0)
                    <= UNCHANGED_DISTANCE * UNCHANGED_DISTANCE;
            self.changes
                .push(if kept { TRANSPARENT_INDEX } else { new });
        }
        let mut gif_frame = match changed_rect(&self.changes, width as usize) {
            Some(rect) => self.changes_in(rect),
            // Nothing changed: one transparent pixel keeps the frame (and its delay).
            None => gif::Frame::from_indexed_pixels(1, 1, vec![TRANSPARENT_INDEX], None),
        };
        gif_frame.transparent = Some(TRANSPARENT_INDEX);
        gif_frame.delay = delay;
        gif_frame.dispose = DisposalMethod::Keep;
        self.encoder
            .write_frame(&gif_frame)
            .map_err(|source| RecordError::Encode {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The frame for `rect` of the changes (transparent where nothing changed); then shows them.
    fn changes_in(&mut self, rect: Rect) -> gif::Frame<'static> {
        let width = self.width as usize;
        let mut pixels = Vec::with_capacity(rect.width * rect.height);
        for y in rect.top..rect.top + rect.height {
            let row = y * width + rect.left..y * width + rect.left + rect.width;
            let changes = &self.changes[row.clone()];
            pixels.extend_from_slice(changes);
            for (shown, &change) in self.shown[row].iter_mut().zip(changes) {
                if change != TRANSPARENT_INDEX {
                    *shown = change;
                }
            }
        }
        // The rectangle lies inside the frame, whose sides fit a u16.
        let mut gif_frame =
            gif::Frame::from_indexed_pixels(rect.width as u16, rect.height as u16, pixels, None);
        gif_frame.left = rect.left as u16;
        gif_frame.top = rect.top as u16;
        gif_frame
    }
}

/// A rectangle of pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    left: usize,
    top: usize,
    width: usize,
    height: usize,
}

/// The smallest rectangle holding every changed pixel (`None`: none is) of `changes`, a row-major
/// image `width` pixels wide (at least 1) holding [`TRANSPARENT_INDEX`] where nothing changed.
fn changed_rect(changes: &[u8], width: usize) -> Option<Rect> {
    let changed = |&index: &u8| index != TRANSPARENT_INDEX;
    let rows = || changes.chunks_exact(width);
    let top = rows().position(|row| row.iter().any(changed))?;
    let bottom = rows().rposition(|row| row.iter().any(changed))?;
    let (mut left, mut right) = (width, 0);
    for row in rows().skip(top).take(bottom + 1 - top) {
        if let Some(first) = row.iter().position(changed) {
            left = left.min(first);
            right = right.max(row.iter().rposition(changed).unwrap_or(first));
        }
    }
    Some(Rect {
        left,
        top,
        width: right + 1 - left,
        height: bottom + 1 - top,
    })
}

/// One GIF palette and the table that maps colours to it.
struct Palette {
    /// Index 0 is the transparent index and never the nearest colour.
    colors: Vec<[u8; 3]>,
    /// The nearest palette index for each colour cell (`LOOKUP_BITS` a channel), or
    /// [`LOOKUP_EMPTY`] until a colour in the cell first appears.
    lookup: Vec<u8>,
}

impl Palette {
    /// The fixed cube and the colours NeuQuant finds in `frame`.
    fn from_frame(frame: &Frame) -> Self {
        let mut colors = Vec::with_capacity(256);
        colors.push([0, 0, 0]);
        let step = 255 / (CUBE_LEVELS - 1);
        for r in 0..CUBE_LEVELS {
            for g in 0..CUBE_LEVELS {
                for b in 0..CUBE_LEVELS {
                    colors.push([(r * step) as u8, (g * step) as u8, (b * step) as u8]);
                }
            }
        }
        let rgba: Vec<u8> = frame
            .pixels()
            .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
            .collect();
        let quantiser = color_quant::NeuQuant::new(NEUQUANT_SAMPLE_FACTOR, ADAPTIVE_COLORS, &rgba);
        colors.extend(
            quantiser
                .color_map_rgb()
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]]),
        );
        Self {
            colors,
            lookup: vec![LOOKUP_EMPTY; 1 << (3 * LOOKUP_BITS)],
        }
    }

    /// The palette as a GIF wants it: r, g, b, r, g, b...
    fn rgb(&self) -> Vec<u8> {
        self.colors.iter().flatten().copied().collect()
    }

    /// The index of the palette colour nearest `rgb` (never the transparent index).
    fn index_of(&mut self, rgb: [u8; 3]) -> u8 {
        let drop = 8 - LOOKUP_BITS;
        let cell = rgb.iter().fold(0usize, |cell, &c| {
            (cell << LOOKUP_BITS) | usize::from(c >> drop)
        });
        match self.lookup[cell] {
            LOOKUP_EMPTY => {
                // The cell's middle stands for every colour in it.
                let middle = rgb.map(|c| (c >> drop << drop) | (1 << drop >> 1));
                let index = self.nearest(middle);
                self.lookup[cell] = index;
                index
            }
            index => index,
        }
    }

    fn nearest(&self, rgb: [u8; 3]) -> u8 {
        let (index, _) = self
            .colors
            .iter()
            .enumerate()
            .skip(1)
            .min_by_key(|&(_, &color)| distance_squared(color, rgb))
            .unwrap_or((1, &[0, 0, 0]));
        // At most 256 colours: the index fits a u8.
        index as u8
    }
}

/// The squared distance between two colours in RGB.
fn distance_squared(a: [u8; 3], b: [u8; 3]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&a, b)| u32::from(a.abs_diff(b)).pow(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_rect_bounds_every_difference() {
        let mut changes = vec![TRANSPARENT_INDEX; 5 * 4];
        assert_eq!(changed_rect(&changes, 5), None);
        changes[5 + 3] = 1; // (3, 1)
        changes[2 * 5 + 1] = 1; // (1, 2)
        assert_eq!(
            changed_rect(&changes, 5),
            Some(Rect {
                left: 1,
                top: 1,
                width: 3,
                height: 2
            })
        );
    }

    #[test]
    fn a_frame_after_the_first_holds_only_what_changed() {
        let dir = tempfile::tempdir().expect("scratch folder");
        let path = dir.path().join("changes.gif");
        let first = Frame::from_fn(64, 32, |x, y| image::Rgb([x as u8 * 4, y as u8 * 8, 60]));
        let mut second = first.clone();
        for y in 6..10 {
            for x in 10..15 {
                second.put_pixel(x, y, image::Rgb([250, 250, 250]));
            }
        }
        // A ripple within the tolerance counts as no change.
        let mut third = second.clone();
        let ripple = third.get_pixel(40, 20).0.map(|c| c.saturating_add(4));
        third.put_pixel(40, 20, image::Rgb(ripple));
        let mut recorder = GifRecorder::create(&path, 25.0).expect("created");
        for frame in [&first, &second, &third] {
            recorder.push(frame).expect("written");
        }
        assert_eq!(recorder.finish().expect("finished"), 3);

        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::Indexed);
        let file = File::open(&path).expect("written");
        let mut decoder = options.read_info(file).expect("a GIF header");
        let mut rects = Vec::new();
        while let Some(frame) = decoder.read_next_frame().expect("a frame") {
            rects.push((
                frame.left,
                frame.top,
                frame.width,
                frame.height,
                frame.delay,
            ));
        }
        assert_eq!(
            rects,
            [(0, 0, 64, 32, 4), (10, 6, 5, 4, 4), (0, 0, 1, 1, 4)],
            "left, top, width, height, delay"
        );
    }

    #[test]
    fn frames_of_another_size_are_an_error() {
        let dir = tempfile::tempdir().expect("scratch folder");
        let mut recorder =
            GifRecorder::create(&dir.path().join("sizes.gif"), 10.0).expect("created");
        let empty = recorder
            .push(&Frame::new(0, 8))
            .expect_err("an empty first frame");
        assert!(
            empty.to_string().contains("sides are 1 to 65535"),
            "{empty}"
        );
        recorder = GifRecorder::create(&dir.path().join("sizes.gif"), 10.0).expect("created");
        recorder.push(&Frame::new(8, 8)).expect("written");
        let err = recorder
            .push(&Frame::new(8, 9))
            .expect_err("a frame of another size");
        assert!(err.to_string().contains("its frames are 8x8"), "{err}");
        recorder.push(&Frame::new(8, 8)).expect("the file goes on");
        assert_eq!(recorder.finish().expect("finished"), 2);
    }

    #[test]
    fn delays_keep_the_average_rate() {
        let dir = tempfile::tempdir().expect("scratch folder");
        let mut recorder =
            GifRecorder::create(&dir.path().join("rate.gif"), 35.0).expect("created");
        let delays: Vec<u16> = (0..35)
            .map(|_| {
                let delay = recorder.next_delay();
                recorder.elapsed_centiseconds += u64::from(delay);
                recorder.frames += 1;
                delay
            })
            .collect();
        assert!(delays.iter().all(|&d| d == 2 || d == 3), "{delays:?}");
        assert_eq!(delays.iter().map(|&d| u32::from(d)).sum::<u32>(), 100);
    }

    #[test]
    fn a_bad_frame_rate_is_an_error() {
        let dir = tempfile::tempdir().expect("scratch folder");
        for fps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                GifRecorder::create(&dir.path().join("bad.gif"), fps),
                Err(RecordError::FrameRate { .. })
            ));
        }
    }

    #[test]
    fn every_colour_maps_near_itself_and_never_to_transparency() {
        // 64 colours, fewer than NeuQuant's share of the palette (which it fits only roughly).
        let frame = Frame::from_fn(256, 256, |x, y| {
            image::Rgb([(x / 32) as u8 * 32, (y / 32) as u8 * 32, 128])
        });
        let mut palette = Palette::from_frame(&frame);
        for pixel in frame.pixels() {
            let index = palette.index_of(pixel.0);
            assert_ne!(index, TRANSPARENT_INDEX);
            let color = palette.colors[usize::from(index)];
            let error = color
                .iter()
                .zip(pixel.0)
                .map(|(&a, b)| a.abs_diff(b))
                .max()
                .unwrap_or(0);
            assert!(error <= 24, "{:?} became {color:?}", pixel.0);
        }
        // A colour the first frame lacks still finds one nearby in the cube.
        let red_index = palette.index_of([250, 10, 10]);
        let red = palette.colors[usize::from(red_index)];
        assert!(red[0] >= 170 && red[1] <= 85 && red[2] <= 85, "{red:?}");
    }
}
