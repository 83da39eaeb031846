//! The apply journal: a local JSON-lines file per fleet, `<state-dir>/fleet-<fleet>.journal.jsonl`,
//! one record per write, appended by a writer thread as soon as it runs (group commit).
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
        /// Failed.
        failed: usize,
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

/// An open journal. Records are appended by a writer thread: [`Journal::record`] only queues
/// the record, and the writer appends everything queued with one `write` (group commit), so
/// records reach the file as soon as it runs and many writes in flight cost a few system calls,
/// not one each. [`Journal::close`] (or dropping the journal) waits for the writer to append
/// the rest and `fsync`s the file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    tx: Mutex<Option<std::sync::mpsc::Sender<Record>>>,
    writer: Mutex<Option<std::thread::JoinHandle<Result<(), String>>>>,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
        let (tx, rx) = std::sync::mpsc::channel::<Record>();
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("harmony-journal".into())
                .spawn(move || {
                    let result = (|| {
                        let mut buf = Vec::with_capacity(64 * 1024);
                        // Block for one record, then take everything else already queued.
                        while let Ok(first) = rx.recv() {
                            buf.clear();
                            append_line(&mut buf, &first)?;
                            while let Ok(more) = rx.try_recv() {
                                append_line(&mut buf, &more)?;
                            }
                            file.write_all(&buf).map_err(|e| e.to_string())?;
                        }
                        file.sync_data().map_err(|e| e.to_string())
                    })();
                    if result.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    result
                })
                .map_err(|e| journal_err(&path, e))?
        };
        Ok((Journal { path, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)), failed }, interrupted))
    }

    /// Appends a record (queued for the writer thread; see [`Journal`]). Fails once the writer
    /// has failed or the journal is closed.
    pub fn record(&self, r: Record) -> Result<(), FleetError> {
        if self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(journal_err(&self.path, "an earlier write failed"));
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match tx.as_ref() {
            Some(tx) => tx.send(r).map_err(|_| journal_err(&self.path, "the journal writer stopped")),
            None => Err(journal_err(&self.path, "the journal is closed")),
        }
    }

    /// Waits until every record is in the file, `fsync`s it, and reports a write error if any.
    pub fn close(&self) -> Result<(), FleetError> {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
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
        j.record(Record::End { finished_ms: 0, written: 1, stale: 0, failed: 0 }).expect("end");
        j.close().expect("close"); // every queued record is in the file
        let (j, prev) = Journal::begin(dir.path(), "pico", "a3", "me@host", 0).expect("begin");
        assert!(prev.is_none(), "a finished apply is not reported");
        j.record(Record::End { finished_ms: 0, written: 0, stale: 0, failed: 2 }).expect("end");
        j.close().expect("close");
        assert!(j.record(Record::End { finished_ms: 0, written: 0, stale: 0, failed: 0 }).is_err(), "a closed journal takes no records");
        let (_j, prev) = Journal::begin(dir.path(), "pico", "a4", "me@host", 0).expect("begin");
        assert_eq!(prev.map(|p| p.apply_id), Some("a3".to_string()), "an apply with failed writes is reported");
    }
}
