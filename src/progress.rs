//! What `harmony apply` prints while it runs: one line per unit as it finishes (human text or a
//! JSON object per line), flushed at once whatever stdout is, and on a terminal a live display
//! (units done/total, what runs, elapsed time) on stderr. Formatting only: the events come from
//! [`harmony_executor::execute::Event`].

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harmony_executor::execute::{Event, Observer};
use harmony_schemas::plan::{ActionResult, ApplyUnit, Outcome};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line of text per unit (applied and unchanged on stdout unless quiet; stale, failed and
    /// skipped on stderr).
    Human { quiet: bool },
    /// A JSON object per unit on stdout ([`ApplyUnit`]).
    Json,
}

/// Prints an apply's events as they come (see the module docs).
pub struct Printer {
    style: Style,
    started: Instant,
    /// The live display (stderr is a terminal and not `--quiet`).
    bar: Option<indicatif::ProgressBar>,
    state: Mutex<Live>,
}

/// What the live display shows besides the counts.
#[derive(Default)]
struct Live {
    running: Vec<String>,
    /// A fleet's writes: (done, total).
    writes: Option<(usize, usize)>,
}

impl Printer {
    /// A printer in `style`; the live display only when `live` and stderr is a terminal.
    pub fn new(style: Style, live: bool) -> Arc<Printer> {
        let bar = (live && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{elapsed_precise} {bar:30} {pos}/{len} units {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Arc::new(Printer { style, started: Instant::now(), bar, state: Mutex::new(Live::default()) })
    }

    /// The observer to hand the executor.
    pub fn observer(self: &Arc<Printer>) -> Observer {
        let me = self.clone();
        Arc::new(move |e| me.event(e))
    }

    /// A fleet's write progress (done, total), for the live display.
    pub fn writes(self: &Arc<Printer>) -> Option<Arc<dyn Fn(usize, usize) + Send + Sync>> {
        self.bar.as_ref()?;
        let me = self.clone();
        Some(Arc::new(move |done, total| {
            me.live().writes = (done < total).then_some((done, total));
            me.show();
        }))
    }

    /// A note on stderr (a signal, a rollout's progress) that does not garble the live display.
    pub fn note(&self, line: &str) {
        self.out(true, line);
    }

    /// Ends the live display (before the summary).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event(&self, e: Event<'_>) {
        match e {
            Event::Started { units } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(units as u64);
                }
            }
            Event::Running(what) => {
                self.live().running.push(what.to_string());
                self.show();
            }
            Event::Ended(what) => {
                let mut live = self.live();
                live.running.retain(|w| w != what);
                live.writes = None;
                drop(live);
                self.show();
            }
            Event::Finished(r) => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                match self.style {
                    Style::Json => self.out(false, &ApplyUnit::new(r.clone(), elapsed).to_line()),
                    Style::Human { quiet } => {
                        if let Some((stderr, line)) = human_line(r, quiet) {
                            self.out(stderr, &line);
                        }
                    }
                }
            }
        }
    }

    /// The live display's message: what runs.
    fn show(&self) {
        let Some(bar) = &self.bar else { return };
        let live = self.live();
        let mut msg = if live.running.is_empty() { String::new() } else { format!("running: {}", live.running.join(", ")) };
        if let Some((done, total)) = live.writes {
            msg.push_str(&format!(" ({done}/{total} writes)"));
        }
        bar.set_message(msg);
    }

    /// Writes `line` to stderr or stdout and flushes it, with the live display out of the way.
    fn out(&self, stderr: bool, line: &str) {
        let write = || {
            if stderr {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{line}");
                let _ = e.flush();
            } else {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// A unit's line: applied and unchanged ones on stdout unless `quiet` (a fleet's unchanged
/// devices and agents only counted in the summary, not listed); stale, failed and skipped ones on
/// stderr. `(on stderr, text)`.
fn human_line(r: &ActionResult, quiet: bool) -> Option<(bool, String)> {
    match r.outcome {
        Outcome::Noop if r.unit.starts_with("device-plan/") || r.unit.starts_with("agent/") => None,
        Outcome::Applied | Outcome::Noop if quiet => None,
        Outcome::Applied | Outcome::Noop => Some((false, format!("{}: {}", r.unit, r.message))),
        Outcome::Stale => Some((
            true,
            format!(
                "stale: {}: {} (expected {}, found {}): refused; re-plan",
                r.unit,
                r.message,
                r.expected.as_deref().unwrap_or("?"),
                r.found.as_deref().unwrap_or("?")
            ),
        )),
        Outcome::Failed => Some((true, format!("error: {}: {}", r.unit, r.message))),
        Outcome::Skipped => Some((true, format!("skipped: {}: {}", r.unit, r.message))),
    }
}
