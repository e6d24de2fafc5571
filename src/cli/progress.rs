//! Progress output of `reportjob run`: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::plan::Plan;
use crate::run_local::ProgressSink;
use crate::staging::PartManifest;

/// Reports progress on stderr.
pub struct Reporter {
    bar: Option<ProgressBar>,
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
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} chunks  {msg}  ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Reporter {
            bar,
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
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
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
        if let Some(bar) = &self.bar {
            bar.set_length(plan.chunks.len() as u64);
        }
        let how = if reused {
            format!("resuming run {} with its staged plan", plan.run_id)
        } else {
            format!("planned run {}", plan.run_id)
        };
        self.line(&format!(
            "{how}: {} chunks over {} (~{} rows, {:?} boundaries)",
            plan.chunks.len(),
            plan.source.description,
            plan.estimated_rows,
            plan.strategy
        ));
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
        match &self.bar {
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
        self.line(&format!(
            "chunk {index}: attempt {attempt} failed, retrying: {error}"
        ));
    }

    fn assembling(&self) {
        let resumed = self.state.lock().map(|s| s.resumed).unwrap_or(0);
        if resumed > 0 {
            self.line(&format!("{resumed} chunks were already exported by an earlier run and were not exported again"));
        }
        self.line("finishing the report");
    }
}
