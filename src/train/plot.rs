//! PNG plots of the training CSV logs (losses, fitness), and the side-by-side figure of reality and
//! the two dreams, drawn with plotters into an image buffer.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, bail};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::fidelity::SideBySide;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

static FONT: Once = Once::new();

/// plotters' ab_glyph text needs a registered font; egui's Ubuntu Light is already in the binary.
fn register_fonts() {
    FONT.call_once(|| {
        let _ = register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// The series of a CSV log: for each of `columns`, the (x, y) points where both are present.
pub fn read_series(
    csv: &Path,
    x_column: &str,
    columns: &[&str],
) -> anyhow::Result<Vec<Vec<(f64, f64)>>> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let index = |name: &str| header.iter().position(|h| *h == name);
    let Some(xi) = index(x_column) else {
        bail!("{} has no column {x_column}", csv.display());
    };
    let yi: Vec<Option<usize>> = columns.iter().map(|c| index(c)).collect();
    let mut series = vec![Vec::new(); columns.len()];
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let value = |i: usize| cells.get(i).and_then(|c| c.trim().parse::<f64>().ok());
        let Some(x) = value(xi) else { continue };
        for (s, i) in series.iter_mut().zip(&yi) {
            if let Some(y) = i.and_then(value).filter(|y| y.is_finite()) {
                s.push((x, y));
            }
        }
    }
    Ok(series)
}

/// Plots `columns` of `csv` against `x_column` into `png`. Columns that are absent or empty are
/// left out of the legend; a log with no points yet writes nothing.
pub fn plot_csv(
    csv: &Path,
    png: &Path,
    title: &str,
    x_column: &str,
    columns: &[&str],
) -> anyhow::Result<()> {
    register_fonts();
    let series = read_series(csv, x_column, columns)?;
    let points = series.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let draw = |e| anyhow::anyhow!("plotting {}: {e:?}", png.display());
        root.fill(&WHITE).map_err(draw)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64);
        let lines = Lines {
            x_column,
            columns,
            series: &series,
        };
        if wants_log_axis(y0, y1) {
            // Pad by the same share of the axis as the linear case, in decades.
            let pad = (y1 / y0).powf(0.05);
            let ys = (y0 / pad..y1 * pad).log_scale();
            let chart = builder.build_cartesian_2d(x0..x1, ys).map_err(draw)?;
            lines.draw(chart).map_err(draw)?;
        } else {
            let pad = ((y1 - y0) * 0.05).max(1e-6);
            let chart = builder
                .build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)
                .map_err(draw)?;
            lines.draw(chart).map_err(draw)?;
        }
        root.present().map_err(draw)?;
    }
    let image = image::RgbImage::from_raw(WIDTH, HEIGHT, buffer).context("plot buffer size")?;
    image
        .save(png)
        .with_context(|| format!("cannot write {}", png.display()))
}

/// A loss that falls over orders of magnitude (most do: the first steps are 100x the last) is
/// drawn on a log axis, so the late steps, where a run is judged, are not a flat line at the foot.
fn wants_log_axis(y0: f64, y1: f64) -> bool {
    y0 > 0.0 && y1 / y0 > 30.0
}

/// The curves of one plot, drawn on either kind of y axis.
struct Lines<'a> {
    x_column: &'a str,
    columns: &'a [&'a str],
    series: &'a [Vec<(f64, f64)>],
}

impl Lines<'_> {
    fn draw<'b, DB, Y>(
        &self,
        mut chart: ChartContext<'b, DB, Cartesian2d<RangedCoordf64, Y>>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        DB: DrawingBackend + 'b,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(self.x_column)
            // Steps and generations are whole: "200", not "200.0".
            .x_label_formatter(&|x| match x.fract() {
                0.0 => format!("{x:.0}"),
                _ => format!("{x:.1}"),
            })
            .label_style(("sans-serif", 15))
            .draw()?;
        for (k, (name, s)) in self.columns.iter().zip(self.series).enumerate() {
            if s.is_empty() {
                continue;
            }
            let colour = COLOURS[k % COLOURS.len()];
            if s.len() < 50 {
                // Held-out losses come once an epoch: a line through one point draws nothing.
                chart.draw_series(s.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
            }
            chart
                .draw_series(LineSeries::new(s.iter().copied(), colour.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3))
                });
        }
        // Upper right: losses fall, so that corner is the emptiest late in a run, and the last
        // held-out point sits at the right edge's middle.
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
    }
}

/// The side-by-side figure's frames are drawn this many times their size, nearest neighbour, so
/// that a lecture hall sees Take Cover's fireballs.
const SIDE_BY_SIDE_SCALE: u32 = 3;

/// Draws `figure` into `png`: per fork a block of three rows (reality, M's dream, the flow dream)
/// and a column per horizon, the fork's own frame first; the blocks side by side.
pub fn save_side_by_side(figure: &SideBySide, png: &Path) -> anyhow::Result<()> {
    const MARGIN: u32 = 20;
    const GAP: u32 = 6;
    const BLOCK_GAP: u32 = 36;
    const TITLE_H: u32 = 64;
    const HEADER_H: u32 = 44;
    const COLUMN_H: u32 = 42;
    const ROWS: [&str; 3] = ["real", "2018 dream (V+M)", "flow dream"];
    register_fonts();
    let Some(frame) = figure.forks.first().and_then(|f| f.real.first()) else {
        bail!("no fork to draw into {}", png.display());
    };
    let side = frame.width() * SIDE_BY_SIDE_SCALE;
    let columns = 1 + figure.horizons.len() as u32;
    let block_w = columns * side + (columns - 1) * GAP;
    let blocks = figure.forks.len() as u32;
    let title_font = ("sans-serif", 40).into_font().color(&BLACK);
    let header_font = ("sans-serif", 32).into_font().color(&BLACK);
    let label_font = ("sans-serif", 36).into_font().color(&BLACK);
    let column_font = ("sans-serif", 30).into_font().color(&RGBColor(80, 80, 80));
    let label_w = {
        let mut widest = 0;
        for label in ROWS {
            let (w, _) = label_font
                .font
                .box_size(label)
                .map_err(|e| drawing_error(png, e))?;
            widest = widest.max(w);
        }
        widest + 24
    };
    let width = MARGIN * 2 + label_w + blocks * block_w + (blocks - 1) * BLOCK_GAP;
    let top = MARGIN + TITLE_H + HEADER_H + COLUMN_H;
    let height = top + 3 * side + 2 * GAP + MARGIN;
    let block_x = |b: u32| MARGIN + label_w + b * (block_w + BLOCK_GAP);
    let cell = |b: u32, column: u32, row: u32| {
        (block_x(b) + column * (side + GAP), top + row * (side + GAP))
    };

    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (b, fork) in figure.forks.iter().enumerate() {
        for (row, frames) in [&fork.real, &fork.world_model, &fork.flow]
            .iter()
            .enumerate()
        {
            for (column, frame) in frames.iter().enumerate() {
                let big = image::imageops::resize(
                    frame,
                    side,
                    side,
                    image::imageops::FilterType::Nearest,
                );
                let (x, y) = cell(b as u32, column as u32, row as u32);
                image::imageops::replace(&mut canvas, &big, i64::from(x), i64::from(y));
            }
        }
    }
    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let at = |x: u32, y: u32| (x as i32, y as i32);
        let title = format!(
            "{}: reality and both dreams from the same fork, driven by reality's actions",
            figure.env
        );
        root.draw_text(&title, &title_font, at(MARGIN, MARGIN))
            .map_err(|e| drawing_error(png, e))?;
        for (row, label) in ROWS.iter().enumerate() {
            let (_, h) = label_font
                .font
                .box_size(label)
                .map_err(|e| drawing_error(png, e))?;
            let y = top + row as u32 * (side + GAP) + side.saturating_sub(h) / 2;
            root.draw_text(label, &label_font, at(MARGIN, y))
                .map_err(|e| drawing_error(png, e))?;
        }
        for (b, fork) in figure.forks.iter().enumerate() {
            let b = b as u32;
            let header = format!("episode {}, step {}", fork.episode, fork.step);
            root.draw_text(&header, &header_font, at(block_x(b), MARGIN + TITLE_H))
                .map_err(|e| drawing_error(png, e))?;
            let names = std::iter::once("fork".to_string()).chain(
                figure
                    .horizons
                    .iter()
                    .map(|h| format!("+{h} step{}", if *h == 1 { "" } else { "s" })),
            );
            for (column, name) in names.enumerate() {
                let (x, _) = cell(b, column as u32, 0);
                root.draw_text(&name, &column_font, at(x, MARGIN + TITLE_H + HEADER_H))
                    .map_err(|e| drawing_error(png, e))?;
            }
        }
        root.present().map_err(|e| drawing_error(png, e))?;
    }
    let image = image::RgbImage::from_raw(width, height, buffer).context("figure buffer size")?;
    image
        .save(png)
        .with_context(|| format!("cannot write {}", png.display()))
}

fn drawing_error(png: &Path, e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("drawing {}: {e:?}", png.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_log_with_gaps_into_a_non_blank_png() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("loss.csv");
        std::fs::write(&csv, "step,recon,val\n0,10,\n1,8,9\n2,5,\n").unwrap();
        let series = read_series(&csv, "step", &["recon", "val", "absent"]).unwrap();
        assert_eq!(series[0], vec![(0.0, 10.0), (1.0, 8.0), (2.0, 5.0)]);
        assert_eq!(series[1], vec![(1.0, 9.0)]);
        assert!(series[2].is_empty());
        let png = dir.path().join("loss.png");
        plot_csv(&csv, &png, "loss", "step", &["recon", "val"]).unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // The first series' colour is drawn somewhere.
        assert!(img.pixels().any(|p| p.0 == [31, 119, 180]));
    }

    /// Blue pixels in the plot's lowest tenth (above the x axis's labels).
    fn blue_near_the_foot(png: &Path) -> usize {
        let img = image::open(png).unwrap().to_rgb8();
        let (top, bottom) = (HEIGHT * 8 / 10, HEIGHT - 50);
        img.enumerate_pixels()
            .filter(|(_, y, p)| (top..bottom).contains(y) && p.0 == [31, 119, 180])
            .count()
    }

    #[test]
    fn a_loss_falling_over_decades_gets_a_log_axis() {
        let dir = tempfile::tempdir().unwrap();
        let (csv, png) = (dir.path().join("loss.csv"), dir.path().join("loss.png"));
        // 1000 -> 1: on a linear axis the last two thirds hug the foot.
        std::fs::write(&csv, "step,recon\n0,1000\n1,100\n2,10\n3,1\n").unwrap();
        plot_csv(&csv, &png, "loss", "step", &["recon"]).unwrap();
        let falling = blue_near_the_foot(&png);
        // The same fall, shifted up a decade's worth: no longer 30x, so a linear axis.
        std::fs::write(&csv, "step,recon\n0,1100\n1,200\n2,110\n3,101\n").unwrap();
        plot_csv(&csv, &png, "loss", "step", &["recon"]).unwrap();
        let shifted = blue_near_the_foot(&png);
        assert!(
            falling * 3 < shifted,
            "{falling} blue pixels near the foot on the log axis, {shifted} on the linear one"
        );
    }
}
