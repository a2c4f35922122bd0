//! Progress of long work on standard error: on a terminal one line redrawn in place (done, rate,
//! and time left when the total is known); otherwise a plain line every [`PLAIN_EVERY`]; always
//! one summary line at the end. `--quiet` keeps only the summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A plain progress line this often when standard error is not a terminal (a log, a CronJob).
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// A terminal's line is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Plain,
    Quiet,
}

impl Mode {
    /// Terminal when standard error is one, else plain; quiet when asked.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }
}

/// A reader that counts the bytes read through it, for a progress's time left.
pub struct Counting<R> {
    pub inner: R,
    pub read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

pub struct Progress {
    what: &'static str,
    unit: &'static str,
    mode: Mode,
    started: Instant,
    last: Instant,
    done: u64,
    /// Of `total`, when known (e.g. bytes of the input file), for the time left.
    position: Option<(u64, u64)>,
}

impl Progress {
    /// `what` names the work ("export"), `unit` what is counted ("entries").
    pub fn new(what: &'static str, unit: &'static str, mode: Mode) -> Progress {
        let now = Instant::now();
        let p = Progress {
            what,
            unit,
            mode,
            started: now,
            last: now,
            done: 0,
            position: None,
        };
        p.draw();
        p
    }

    /// `n` more done; `position` is how far through the known total the work is.
    pub fn advance(&mut self, n: u64, position: Option<(u64, u64)>) {
        self.done += n;
        if position.is_some() {
            self.position = position;
        }
        let every = match self.mode {
            Mode::Terminal => REDRAW_EVERY,
            Mode::Plain => PLAIN_EVERY,
            Mode::Quiet => return,
        };
        if self.last.elapsed() >= every {
            self.last = Instant::now();
            self.draw();
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        let mut line = format!(
            "{}: {} {} done, {:.0}/s",
            self.what, self.done, self.unit, rate
        );
        if let Some((at, total)) = self.position.filter(|(at, t)| *t > 0 && *at > 0) {
            let fraction = (at as f64 / total as f64).min(1.0);
            let left = secs * (1.0 - fraction) / fraction;
            line.push_str(&format!(
                ", {:.0}%, about {} left",
                fraction * 100.0,
                human(left)
            ));
        }
        line
    }

    fn draw(&self) {
        let mut err = std::io::stderr().lock();
        let _ = match self.mode {
            // Carriage return and erase-line: the line is redrawn in place.
            Mode::Terminal => write!(err, "\r\x1b[2K{}", self.line()),
            Mode::Plain => writeln!(err, "{}", self.line()),
            Mode::Quiet => Ok(()),
        };
        let _ = err.flush();
    }

    /// Ends the progress line and writes `summary` (always, whatever the mode).
    pub fn finish(self, summary: &str) {
        if self.mode == Mode::Terminal {
            self.draw();
        }
        let mut err = std::io::stderr().lock();
        if self.mode == Mode::Terminal {
            let _ = writeln!(err);
        }
        let _ = writeln!(err, "{summary}");
        let _ = err.flush();
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

fn human(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `registry-db sweep` with progress: probes done of the entries, read every redraw while the
/// sweep runs, then a summary line of the verdicts.
pub async fn sweep(
    catalog: &crate::domain::catalog::Catalog,
    quiet: bool,
) -> Result<crate::health::SweepReport, crate::error::AppError> {
    use std::sync::atomic::Ordering;
    let count = crate::domain::catalog::SweepCount::default();
    let mut progress = Progress::new("sweep", "probes", Mode::detect(quiet));
    let opts = crate::health::SweepOptions::default();
    let run = catalog.sweep_counted(&opts, &count);
    tokio::pin!(run);
    let mut shown = 0;
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            () = tokio::time::sleep(REDRAW_EVERY) => {
                let done = count.done.load(Ordering::Relaxed);
                let total = count.total.load(Ordering::Relaxed);
                progress.advance(done - shown, Some((done, total)));
                shown = done;
            }
        }
    };
    let done = count.done.load(Ordering::Relaxed);
    progress.advance(done - shown, None);
    let secs = progress.elapsed().as_secs_f64();
    progress.finish(&format!(
        "swept {} entries in {secs:.1} s: {}",
        count.total.load(Ordering::Relaxed),
        serde_json::to_string(&report).unwrap_or_default()
    ));
    Ok(report)
}

/// `registry-db reindex` with its progress: entries read of about how many (the store says, when
/// it knows), and a summary line.
pub async fn reindex(
    store: &dyn crate::store::Store,
    quiet: bool,
) -> Result<crate::store::ReindexReport, crate::store::StoreError> {
    use std::sync::atomic::Ordering;
    let count = std::sync::Arc::new(crate::domain::store::ReindexProgress::default());
    let mut progress = Progress::new("reindex", "entries", Mode::detect(quiet));
    let run = store.reindex_counted(count.clone());
    tokio::pin!(run);
    let mut shown = 0;
    let position = |count: &crate::domain::store::ReindexProgress| {
        let (read, total) = (
            count.read.load(Ordering::Relaxed),
            count.total.load(Ordering::Relaxed),
        );
        (read, (total > 0).then_some((read, total.max(read))))
    };
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            () = tokio::time::sleep(REDRAW_EVERY) => {
                let (read, at) = position(&count);
                progress.advance(read - shown, at);
                shown = read;
            }
        }
    };
    let (read, _) = position(&count);
    progress.advance(read - shown, None);
    let secs = progress.elapsed().as_secs_f64();
    progress.finish(&format!(
        "reindexed {} entries in {secs:.1} s: {} index keys, {} stale removed, {} counters drifted",
        report.entries,
        report.index_keys + report.name_keys,
        report.stale_keys_removed + report.stale_name_keys_removed,
        report.counts_drifted
    ));
    Ok(report)
}
