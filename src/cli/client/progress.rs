//! Progress on stderr: a bar on a terminal, plain lines otherwise. [`ProgressLine`] is the
//! one bar; [`Reporter`] shows `reportjob run` on it (the engine's [`crate::local::Progress`])
//! and [`WaitProgress`] a ReportJob followed by `submit --wait`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::duration::{human_duration, since};
use crate::api::ReportJob;
use crate::notify::group_digits;
use crate::plan::Plan;
use crate::run_local::ProgressSink;
use crate::staging::PartManifest;

/// A bar of chunks on stderr when it is a terminal; `None` inside, and callers print
/// lines instead, when it is not.
pub struct ProgressLine {
    bar: Option<ProgressBar>,
}

impl ProgressLine {
    /// A bar of chunks followed by `extra` (indicatif template fields), when stderr is a
    /// terminal; with `tick`, the spinner turns by itself.
    pub fn new(extra: &str, tick: bool) -> ProgressLine {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let template =
                format!("{{spinner}} [{{elapsed_precise}}] {{bar:30.cyan/blue}} {{pos}}/{{len}} chunks  {{msg}}{extra}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            if tick {
                bar.enable_steady_tick(Duration::from_millis(200));
            }
            bar
        });
        ProgressLine { bar }
    }

    /// The bar, when there is one.
    pub fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }

    /// Prints a line above the bar (or just the line).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reports the progress of `reportjob run` on stderr.
pub struct Reporter {
    out: ProgressLine,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    total: usize,
    done: usize,
    rows: u64,
    resumed: usize,
}

impl Reporter {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn new() -> Reporter {
        Reporter {
            out: ProgressLine::new("  ETA {eta}", false),
            state: Mutex::new(State {
                started: Instant::now(),
                total: 0,
                done: 0,
                rows: 0,
                resumed: 0,
            }),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.out.finish();
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

impl ProgressSink for Reporter {
    fn planned(&self, plan: &Plan, reused: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.total = plan.chunks.len();
            s.started = Instant::now();
        }
        if let Some(bar) = self.out.bar() {
            bar.set_length(plan.chunks.len() as u64);
        }
        let how = if reused {
            format!("resuming run {} with its staged plan", plan.run_id)
        } else {
            format!("planned run {}", plan.run_id)
        };
        self.out.line(&format!(
            "{how}: {} chunks over {} (~{} rows, {:?} boundaries)",
            plan.chunks.len(),
            plan.source.description,
            plan.estimated_rows,
            plan.strategy
        ));
        for warning in &plan.warnings {
            self.out.line(&format!("warning: {warning}"));
        }
    }

    fn chunk_done(&self, part: &PartManifest, resumed: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        s.done += 1;
        s.rows += part.rows;
        if resumed {
            s.resumed += 1;
        }
        let secs = s.started.elapsed().as_secs_f64().max(1e-3);
        let rate = s.rows as f64 / secs;
        match self.out.bar() {
            Some(bar) => {
                bar.set_position(s.done as u64);
                bar.set_message(format!("{} rows  {:.0} rows/s", s.rows, rate));
            }
            None => eprintln!(
                "chunk {}/{} {} {}: {} rows ({} rows total, {:.0} rows/s)",
                s.done,
                s.total,
                if resumed {
                    "already exported"
                } else {
                    "exported"
                },
                part.range.describe(),
                part.rows,
                s.rows,
                rate
            ),
        }
    }

    fn chunk_retry(&self, index: usize, attempt: u32, error: &crate::error::Error) {
        self.out.line(&format!(
            "chunk {index}: attempt {attempt} failed, retrying: {error}"
        ));
    }

    fn snapshot_restart(&self, restart: u32, limit: u32, error: &crate::error::Error) {
        self.out.line(&format!(
            "{error}; starting the export again under a new snapshot (restart {restart} of {limit})"
        ));
    }

    fn assembling(&self) {
        let resumed = self.state.lock().map(|s| s.resumed).unwrap_or(0);
        if resumed > 0 {
            self.out.line(&format!("{resumed} chunks were already exported by an earlier run and were not exported again"));
        }
        self.out.line("finishing the report");
    }
}

/// Progress of a ReportJob followed by `submit --wait`: the bar, or one line per change
/// (phase, chunks, failures) and at most one every 10 s while only the rows move.
pub struct WaitProgress {
    out: ProgressLine,
    started: Instant,
    last_key: Option<(String, i64, i64, i64)>,
    last_rows: Option<i64>,
    last_line: Instant,
    /// The status message last shown: a new one (why a pod cannot start, why the run is
    /// queued) is printed as it comes, not only at the end.
    last_message: Option<String>,
}

impl WaitProgress {
    /// Starts the clock (and the bar on a terminal).
    pub fn new() -> WaitProgress {
        WaitProgress {
            out: ProgressLine::new("", true),
            started: Instant::now(),
            last_key: None,
            last_rows: None,
            last_line: Instant::now(),
            last_message: None,
        }
    }

    /// Prints a line above the bar.
    pub fn line(&self, text: &str) {
        self.out.line(text);
    }

    /// Shows the ReportJob's status.
    pub fn update(&mut self, rj: &ReportJob) {
        let status = rj.status.clone().unwrap_or_default();
        if let Some(message) = status.message.clone().filter(|m| !m.is_empty())
            && !status.phase.is_some_and(|p| p.is_terminal())
            && self.last_message.as_ref() != Some(&message)
        {
            self.out.line(&format!(
                "[{:>6}] {}",
                human_duration(self.started.elapsed().as_secs() as i64),
                super::print::for_terminal(&message)
            ));
            self.last_message = Some(message);
        }
        let phase = status.phase.map_or("Pending", |p| p.as_str()).to_string();
        let chunks = status.chunks.clone().unwrap_or_default();
        let rows = status.rows.or(status.output.as_ref().map(|o| o.rows));
        let secs = match (&status.start_time, &status.completion_time) {
            (Some(s), Some(c)) => c.0.duration_since(s.0).as_secs_f64(),
            (Some(s), None) => since(s.0) as f64,
            _ => self.started.elapsed().as_secs_f64(),
        };
        let rate = match rows {
            Some(r) if secs >= 1.0 => {
                format!(", {} rows/s", group_digits((r as f64 / secs) as i64))
            }
            _ => String::new(),
        };
        let rows_text = rows
            .map(|r| format!(", {} rows", group_digits(r)))
            .unwrap_or_default();
        let failed = if chunks.failed > 0 {
            format!(" ({} failed)", chunks.failed)
        } else {
            String::new()
        };
        if let Some(bar) = self.out.bar() {
            bar.set_length(chunks.total.max(0) as u64);
            bar.set_position(chunks.succeeded.max(0) as u64);
            bar.set_message(format!("{phase}{failed}{rows_text}{rate}"));
            return;
        }
        let key = (phase.clone(), chunks.total, chunks.succeeded, chunks.failed);
        let changed = self.last_key.as_ref() != Some(&key);
        let rows_moved =
            rows != self.last_rows && self.last_line.elapsed() >= Duration::from_secs(10);
        if changed || rows_moved {
            let counts = if status.chunks.is_some() {
                format!(
                    ": {}/{} chunks{failed}{rows_text}{rate}",
                    chunks.succeeded, chunks.total
                )
            } else {
                String::new()
            };
            eprintln!(
                "[{:>6}] {phase}{counts}",
                human_duration(self.started.elapsed().as_secs() as i64),
            );
            self.last_key = Some(key);
            self.last_rows = rows;
            self.last_line = Instant::now();
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.out.finish();
    }
}

impl Default for WaitProgress {
    fn default() -> Self {
        WaitProgress::new()
    }
}
