//! The apply journal: a local JSON-lines file per fleet, `<state-dir>/fleet-<fleet>.journal.jsonl`,
//! one record per write, appended by a writer thread within [`FLUSH_INTERVAL`] (group commit).
//!
//! It is a record, not a source of truth: every write is a compare-and-set against the bucket,
//! so re-running an interrupted apply re-plans from what the bucket holds and converges (a plan
//! that was written before the interruption is now a no-op; one that was not is written). The
//! journal says what the interrupted (or failed) apply had done, and the next apply reports it and keeps
//! the interrupted journal as `fleet-<fleet>.interrupted.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::FleetError;
use super::plan::FleetOp;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// An apply started.
    Begin {
        /// Apply id.
        apply_id: String,
        /// Fleet.
        fleet: String,
        /// Who (user@host).
        holder: String,
        /// When, Unix ms.
        started_ms: u64,
        /// Actions that write.
        writes: usize,
    },
    /// A write succeeded.
    Done {
        /// Device.
        device: String,
        /// Op.
        op: FleetOp,
        /// New revision (creates and updates).
        revision: Option<u64>,
        /// Generation written.
        generation: Option<u64>,
    },
    /// Refused as stale.
    Stale {
        /// Device.
        device: String,
        /// Expected revision.
        expected: Option<u64>,
        /// Found revision.
        found: Option<u64>,
    },
    /// Failed.
    Failed {
        /// Device.
        device: String,
        /// Error.
        error: String,
    },
    /// The apply finished (whatever the outcome of single actions).
    End {
        /// When, Unix ms.
        finished_ms: u64,
        /// Writes done.
        written: usize,
        /// Refused as stale.
        stale: usize,
        /// Failed (an apply that ended with an error counts it as one more).
        failed: usize,
        /// The error the apply ended with, if any (its writes' records come before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// What an interrupted apply had done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// Its id.
    pub apply_id: String,
    /// Who ran it.
    pub holder: String,
    /// When it started.
    pub started_ms: u64,
    /// Writes it planned.
    pub writes: usize,
    /// Writes it recorded as done.
    pub done: usize,
    /// Where its journal was kept.
    pub kept_at: PathBuf,
}

/// How long a record may wait in memory before the writer thread appends it.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// An open journal. [`Journal::record`] serialises the record into a shared buffer and returns;
/// a writer thread appends whatever has accumulated every [`FLUSH_INTERVAL`] with one `write`
/// (group commit). Nobody is woken per record: waking the writer for each of 10,000 writes in
/// flight cost a context switch each, a third of the write path's time on two cores (measured
/// with `executor/tests/fleet_bench.rs`, see docs/performance.md). A record reaches the file
/// within one interval; [`Journal::close`] (or dropping the journal) appends the rest and
/// `fsync`s the file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    shared: std::sync::Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<Result<(), String>>>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Serialised records not yet appended.
    pending: Mutex<Vec<u8>>,
    /// Set by `close`: the writer appends what is left, syncs and stops.
    closing: std::sync::atomic::AtomicBool,
    /// Set by the writer when a write failed.
    failed: std::sync::atomic::AtomicBool,
    /// `done`, `stale` and `failed` records accepted so far (what `end` counts).
    counts: [std::sync::atomic::AtomicUsize; 3],
}

fn journal_err(path: &Path, e: impl std::fmt::Display) -> FleetError {
    FleetError::Journal { path: path.display().to_string(), detail: e.to_string() }
}

/// The journal file of `fleet` in `dir`.
pub fn journal_path(dir: &Path, fleet: &str) -> PathBuf {
    dir.join(format!("fleet-{fleet}.journal.jsonl"))
}

/// Reads a journal file (unreadable lines, e.g. a torn last line, are skipped).
pub fn read_records(path: &Path) -> Vec<Record> {
    let Ok(f) = File::open(path) else { return Vec::new() };
    BufReader::new(f).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()).collect()
}

fn append_line(buf: &mut Vec<u8>, r: &Record) -> Result<(), String> {
    serde_json::to_writer(&mut *buf, r).map_err(|e| e.to_string())?;
    buf.push(b'\n');
    Ok(())
}

/// The writer thread: every [`FLUSH_INTERVAL`] (or when `close` unparks it), appends what
/// accumulated; after `closing`, appends the rest and syncs.
fn write_loop(mut file: File, shared: &Shared) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let closing = shared.closing.load(Ordering::Acquire);
        std::mem::swap(&mut batch, &mut *shared.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            file.write_all(&batch).map_err(|e| e.to_string())?;
            batch.clear();
        }
        if closing {
            return file.sync_data().map_err(|e| e.to_string());
        }
        std::thread::park_timeout(FLUSH_INTERVAL);
    }
}

impl Journal {
    /// Starts a new apply's journal. If the previous apply of this fleet did not finish (no `end`,
    /// e.g. the process was killed) or ended with failed writes (e.g. the connection was lost), its
    /// journal is kept aside and described in the returned [`Interrupted`].
    pub fn begin(dir: &Path, fleet: &str, apply_id: &str, holder: &str, writes: usize) -> Result<(Journal, Option<Interrupted>), FleetError> {
        std::fs::create_dir_all(dir).map_err(|e| journal_err(dir, e))?;
        let path = journal_path(dir, fleet);
        let previous = read_records(&path);
        let mut interrupted = None;
        if let Some(Record::Begin { apply_id, holder, started_ms, writes, .. }) = previous.first()
            && !previous.iter().any(|r| matches!(r, Record::End { failed: 0, .. }))
        {
            let kept_at = dir.join(format!("fleet-{fleet}.interrupted.jsonl"));
            std::fs::rename(&path, &kept_at).map_err(|e| journal_err(&path, e))?;
            let done = previous.iter().filter(|r| matches!(r, Record::Done { .. })).count();
            interrupted = Some(Interrupted { apply_id: apply_id.clone(), holder: holder.clone(), started_ms: *started_ms, writes: *writes, done, kept_at });
        }
        let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).map_err(|e| journal_err(&path, e))?;
        // `begin` is on disk before any write is attempted.
        let mut line = Vec::new();
        append_line(
            &mut line,
            &Record::Begin {
                apply_id: apply_id.to_string(),
                fleet: fleet.to_string(),
                holder: holder.to_string(),
                started_ms: harmony_schemas::fleet::now_ms(),
                writes,
            },
        )
        .map_err(|e| journal_err(&path, e))?;
        file.write_all(&line).map_err(|e| journal_err(&path, e))?;
        let shared = std::sync::Arc::new(Shared::default());
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("harmony-journal".into())
                .spawn(move || {
                    let result = write_loop(file, &shared);
                    if result.is_err() {
                        shared.failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    result
                })
                .map_err(|e| journal_err(&path, e))?
        };
        Ok((Journal { path, shared, writer: Mutex::new(Some(writer)) }, interrupted))
    }

    /// Appends a record (buffered for the writer thread; see [`Journal`]). Fails once the writer
    /// has failed or the journal is closed.
    pub fn record(&self, r: Record) -> Result<(), FleetError> {
        use std::sync::atomic::Ordering;
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(journal_err(&self.path, "an earlier write failed"));
        }
        let mut line = Vec::with_capacity(128);
        append_line(&mut line, &r).map_err(|e| journal_err(&self.path, e))?;
        let mut pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: `close` sets `closing` before the writer's last swap, so a
        // record accepted here is in that last swap at the latest.
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(journal_err(&self.path, "the journal is closed"));
        }
        pending.extend_from_slice(&line);
        let slot = match r {
            Record::Done { .. } => Some(0),
            Record::Stale { .. } => Some(1),
            Record::Failed { .. } => Some(2),
            Record::Begin { .. } | Record::End { .. } => None,
        };
        if let Some(i) = slot {
            self.shared.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Ends the apply's journal: an `end` record counting the writes recorded (plus one failure
    /// and its message when the apply ended with `error`), then [`Journal::close`]. An apply
    /// that ended with an error or failed writes is reported by the next one as not completed.
    pub fn end(&self, error: Option<String>) -> Result<(), FleetError> {
        let [written, stale, failed] = [0, 1, 2].map(|i| self.shared.counts[i].load(std::sync::atomic::Ordering::Relaxed));
        let failed = failed + usize::from(error.is_some());
        self.record(Record::End { finished_ms: harmony_schemas::fleet::now_ms(), written, stale, failed, error })?;
        self.close()
    }

    /// Waits until every record is in the file, `fsync`s it, and reports a write error if any.
    pub fn close(&self) -> Result<(), FleetError> {
        {
            let _pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.closing.store(true, std::sync::atomic::Ordering::Release);
        }
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = &writer {
            w.thread().unpark();
        }
        match writer.map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(journal_err(&self.path, e)),
            Some(Err(_)) => Err(journal_err(&self.path, "the journal writer panicked")),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_apply_is_reported_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let (j, prev) = Journal::begin(dir.path(), "pico", "a1", "me@host", 2).expect("begin");
        assert!(prev.is_none());
        j.record(Record::Done { device: "d1".into(), op: FleetOp::Create, revision: Some(1), generation: Some(1) }).expect("rec");
        drop(j); // interrupted: no End
        let (j, prev) = Journal::begin(dir.path(), "pico", "a2", "me@host", 1).expect("begin");
        let prev = prev.expect("interrupted");
        assert_eq!((prev.apply_id.as_str(), prev.writes, prev.done), ("a1", 2, 1));
        assert_eq!(read_records(&prev.kept_at).len(), 2);
        j.record(Record::End { finished_ms: 0, written: 1, stale: 0, failed: 0, error: None }).expect("end");
        j.close().expect("close"); // every queued record is in the file
        let (j, prev) = Journal::begin(dir.path(), "pico", "a3", "me@host", 0).expect("begin");
        assert!(prev.is_none(), "a finished apply is not reported");
        j.record(Record::End { finished_ms: 0, written: 0, stale: 0, failed: 2, error: None }).expect("end");
        j.close().expect("close");
        assert!(j.record(Record::End { finished_ms: 0, written: 0, stale: 0, failed: 0, error: None }).is_err(), "a closed journal takes no records");
        let (_j, prev) = Journal::begin(dir.path(), "pico", "a4", "me@host", 0).expect("begin");
        assert_eq!(prev.map(|p| p.apply_id), Some("a3".to_string()), "an apply with failed writes is reported");
    }

    #[test]
    fn records_reach_the_file_while_the_apply_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let (j, _) = Journal::begin(dir.path(), "pico", "a1", "me@host", 100).expect("begin");
        for i in 0..100 {
            j.record(Record::Done { device: format!("d{i}"), op: FleetOp::Create, revision: Some(i), generation: Some(1) }).expect("rec");
        }
        // Without closing: the writer appends within a flush interval (bounded wait, no sleep-and-hope).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while read_records(j.path()).len() < 101 {
            assert!(std::time::Instant::now() < deadline, "records not appended: {}", read_records(j.path()).len());
            std::thread::sleep(FLUSH_INTERVAL);
        }
        let records = read_records(j.path());
        assert!(matches!(&records[0], Record::Begin { writes: 100, .. }));
        assert!(matches!(&records[100], Record::Done { device, revision: Some(99), .. } if device == "d99"), "in order: {:?}", records[100]);
        j.close().expect("close");
        assert_eq!(read_records(j.path()).len(), 101);
    }
}
