//! What every long training job shares: a progress bar with an ETA, a CSV log of its losses or
//! fitness that survives a resume, and the run folder's file names.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr with position, rate and ETA; hidden when stderr is not a terminal
/// (logs then get the job's own summary lines, not redraws).
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let template =
        format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  {{elapsed_precise}} ETA {{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Prints a line above `bar`, or to stderr when the bar is hidden (a hidden bar swallows it).
pub fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line.as_ref());
    }
}

/// An append-only CSV log keyed by its first column (a step, epoch or generation number).
///
/// Opening it for a resumed run keeps the rows up to and including the checkpoint's key and drops
/// the rest, so a killed run's log never holds rows for work that will be redone.
#[derive(Debug)]
pub struct CsvLog {
    path: PathBuf,
    file: File,
    columns: usize,
}

impl CsvLog {
    /// Opens `path` with `header`. `resume_after`: keep rows whose first column is at most this
    /// (a fresh run passes `None` and starts an empty file).
    pub fn open(path: &Path, header: &[&str], resume_after: Option<f64>) -> io::Result<Self> {
        let mut kept = Vec::new();
        if let Some(limit) = resume_after
            && let Ok(existing) = File::open(path)
        {
            for line in BufReader::new(existing).lines().skip(1) {
                let line = line?;
                let key = line
                    .split(',')
                    .next()
                    .and_then(|k| k.trim().parse::<f64>().ok());
                if key.is_some_and(|k| k <= limit) {
                    kept.push(line);
                }
            }
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        writeln!(file, "{}", header.join(","))?;
        for line in kept {
            writeln!(file, "{line}")?;
        }
        file.flush()?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            columns: header.len(),
        })
    }

    /// Appends one row (flushed at once, so a kill loses nothing written).
    pub fn row(&mut self, values: &[f64]) -> io::Result<()> {
        debug_assert_eq!(values.len(), self.columns, "CSV row width");
        let line: Vec<String> = values.iter().map(|v| format_value(*v)).collect();
        writeln!(self.file, "{}", line.join(","))?;
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Values a row holds.
    pub fn columns(&self) -> usize {
        self.columns
    }
}

/// Integers print without a fraction; NaN (a value not measured on this row) prints empty.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a kill never leaves a
/// half-written checkpoint under the real name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Seconds as `1h02m`, `3m05s` or `12.3s`, for summaries.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s >= 3600.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_log_drops_rows_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        let mut log = CsvLog::open(&path, &["step", "loss"], None).unwrap();
        for step in 0..5 {
            log.row(&[step as f64, 1.0 / (step + 1) as f64]).unwrap();
        }
        drop(log);
        let mut log = CsvLog::open(&path, &["step", "loss"], Some(2.0)).unwrap();
        log.row(&[3.0, f64::NAN]).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "step,loss\n0,1\n1,0.500000\n2,0.333333\n3,\n");
    }
}
