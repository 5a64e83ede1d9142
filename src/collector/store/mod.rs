//! The collector's embedded store: SQLite through `rusqlite`, in a
//! directory (`spans.db` and its write-ahead log) or in memory.
//!
//! Why SQLite and not redb: the API searches by service, route, status,
//! minimum duration, time range and any attribute `key=value`, and joins
//! CLIENT spans to their SERVER children for the dependency graph. SQLite
//! does those with indexes and one SQL statement each; over a key-value
//! store such as redb each would be a hand-kept secondary index and a
//! hand-written join. The price is compile time: the bundled amalgamation
//! is one C file, about 40 s once on two cores, then cached.
//!
//! Durability: WAL with `synchronous=FULL`, so a commit returns only after
//! the log is fsynced; the writer (`writer.rs`) acknowledges a batch after
//! its commit, never before. Readers use their own connections: in WAL mode
//! a reader sees the last commit and neither blocks the writer nor waits
//! for it. In memory there is one connection, shared behind a mutex.
//!
//! Queries live in `query.rs`; this file owns the schema, writes and the
//! bounds (`--retention`, `--max-bytes`).

pub mod query;

use super::rows::Batch;
use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status INTEGER NOT NULL,
    http_status INTEGER,
    route TEXT,
    peer_service TEXT,
    stitched INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_service ON spans (service, start_ns);
CREATE TABLE IF NOT EXISTS logs (
    time_ns INTEGER NOT NULL,
    trace_id TEXT,
    service TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_trace ON logs (trace_id);
CREATE INDEX IF NOT EXISTS logs_time ON logs (time_ns);
";

#[derive(Clone)]
pub struct Store {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    /// The write-ahead log, for its size (`restart_wal`); none in memory.
    wal: Option<PathBuf>,
}

/// Past this the writer has the WAL restarted from its beginning.
const WAL_RESTART_BYTES: u64 = 64 << 20;

enum Readers {
    /// Read-only connections to the file, reused; opened as needed.
    File { path: PathBuf, idle: Mutex<Vec<Connection>> },
    /// The in-memory database has only the writer's connection.
    Shared,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the checkpoint thread: {0}")]
    Thread(std::io::Error),
}

/// What `enforce` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub spans: usize,
    pub logs: usize,
}

impl Store {
    /// Opens (creating) `dir/spans.db`, or an in-memory store for `None`.
    pub fn open(dir: Option<&Path>) -> Result<Store, OpenError> {
        let wal = dir.map(|d| d.join("spans.db-wal"));
        let (conn, readers) = match dir {
            Some(dir) => {
                let path = dir.join("spans.db");
                let conn = Connection::open(&path)?;
                // Before any table exists, so freed pages can go back to the
                // file system after a removal (`enforce`).
                conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
                let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(%mode, "the file system refused WAL; readers will wait for the writer");
                }
                conn.pragma_update(None, "synchronous", "FULL")?;
                // The WAL is truncated back to this after checkpoints, so it
                // does not stay as large as the largest burst.
                conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
                // A commit of many requests touches many pages: keep them in
                // memory until the commit instead of spilling them early.
                conn.pragma_update(None, "cache_size", -(64i64 << 10))?;
                // Checkpoints run on their own thread (`checkpoints`), not
                // inside the commit that crosses SQLite's threshold.
                conn.pragma_update(None, "wal_autocheckpoint", 0i64)?;
                checkpoints(&path)?;
                (conn, Readers::File { path, idle: Mutex::new(Vec::new()) })
            }
            None => (Connection::open_in_memory()?, Readers::Shared),
        };
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { writer: Arc::new(Mutex::new(conn)), readers: Arc::new(readers), wal })
    }

    /// Writes every batch in one transaction; durable when this returns Ok.
    pub fn insert<'a>(&self, batches: impl IntoIterator<Item = &'a Batch>) -> rusqlite::Result<()> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        {
            let mut span = tx.prepare_cached(
                "INSERT INTO spans (trace_id, span_id, parent_span_id, service, name, kind, start_ns, end_ns,
                 status, http_status, route, peer_service, stitched, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut log =
                tx.prepare_cached("INSERT INTO logs (time_ns, trace_id, service, doc) VALUES (?1, ?2, ?3, ?4)")?;
            for batch in batches {
                for s in &batch.spans {
                    span.execute(params![
                        s.trace_id,
                        s.span_id,
                        s.parent_span_id,
                        s.service,
                        s.name,
                        s.kind,
                        s.start,
                        s.end,
                        s.status,
                        s.http_status,
                        s.route,
                        s.peer_service,
                        s.stitched,
                        s.doc
                    ])?;
                }
                for l in &batch.logs {
                    log.execute(params![l.time, l.trace_id, l.service, l.doc])?;
                }
            }
        }
        tx.commit()?;
        // The batch is durable: a failed checkpoint must not fail it.
        if let Err(e) = self.restart_wal(&conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying after the next commit");
        }
        Ok(())
    }

    /// Under a steady stream of commits the background checkpoint never
    /// catches up with the last frame, and SQLite reuses the WAL from its
    /// start only after one that did: the WAL would grow without end. Past
    /// `WAL_RESTART_BYTES` the writer itself finishes the checkpoint (most
    /// frames are copied already) and truncates the log.
    fn restart_wal(&self, conn: &Connection) -> rusqlite::Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        if std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES) {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Removes what is older than `oldest_ns`, then the oldest spans and
    /// logs until the database's used pages fit `max_bytes`.
    pub fn enforce(&self, oldest_ns: i64, max_bytes: u64) -> rusqlite::Result<Removed> {
        let conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = Removed {
            spans: conn.execute("DELETE FROM spans WHERE start_ns < ?1", [oldest_ns])?,
            logs: conn.execute("DELETE FROM logs WHERE time_ns < ?1", [oldest_ns])?,
        };
        loop {
            let used = used_bytes(&conn)?;
            if used <= max_bytes {
                break;
            }
            // Spans lead: logs go with the spans of their time. Without
            // spans, the logs alone.
            let spans: i64 = conn.query_row("SELECT COUNT(*) FROM spans", [], |r| r.get(0))?;
            let (table, column, count) = if spans > 0 {
                ("spans", "start_ns", spans)
            } else {
                let logs: i64 = conn.query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0))?;
                ("logs", "time_ns", logs)
            };
            if count == 0 {
                break;
            }
            // The share of rows as large as the excess, and a little more, so
            // a round or two reach the cap.
            let share = ((used - max_bytes) as f64 / used as f64 + 0.02).min(1.0);
            let step = ((count as f64 * share) as i64).max(1);
            let cutoff: i64 = conn.query_row(
                &format!("SELECT {column} FROM {table} ORDER BY {column} LIMIT 1 OFFSET ?1"),
                [step.min(count) - 1],
                |r| r.get(0),
            )?;
            removed.spans += conn.execute("DELETE FROM spans WHERE start_ns <= ?1", [cutoff])?;
            removed.logs += conn.execute("DELETE FROM logs WHERE time_ns <= ?1", [cutoff])?;
        }
        if removed != Removed::default() {
            // Stepped to its end: each step may hand back only some pages.
            let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = vacuum.query([])?;
            while rows.next()?.is_some() {}
        }
        Ok(removed)
    }

    /// Runs a read on a connection of its own (file), or on the shared one
    /// (memory). Blocking: call it from `spawn_blocking`.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        match &*self.readers {
            Readers::Shared => f(&self.writer.lock().unwrap_or_else(|e| e.into_inner())),
            Readers::File { path, idle } => {
                let popped = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let conn = match popped {
                    Some(c) => c,
                    None => {
                        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                        let c = Connection::open_with_flags(path, flags)?;
                        c.busy_timeout(Duration::from_secs(10))?;
                        c
                    }
                };
                let result = f(&conn);
                idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                result
            }
        }
    }
}

#[cfg(test)]
impl Store {
    /// Holds the writer's connection from another thread until the returned
    /// sender is dropped, so the writer thread stalls at its next write (the
    /// back-pressure tests).
    pub fn stall(&self) -> std::sync::mpsc::Sender<()> {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, is_held) = std::sync::mpsc::channel();
        let writer = self.writer.clone();
        std::thread::spawn(move || {
            let _guard = writer.lock().unwrap();
            held.send(()).unwrap();
            let _ = released.recv();
        });
        is_held.recv().unwrap();
        release
    }
}

/// How often the WAL is copied back into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Copies the WAL back into the database from a connection and a thread of
/// their own: on two cores the writer keeps inserting while the pages it
/// committed are written the second time. PASSIVE never waits for the
/// writer or the readers; what it cannot copy now it copies next time.
fn checkpoints(path: &Path) -> Result<(), OpenError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let spawned = std::thread::Builder::new().name("collector-checkpoint".into()).spawn(move || {
        loop {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
        }
    });
    // Without the thread the WAL would only grow: refuse to start.
    spawned.map(|_| ()).map_err(OpenError::Thread)
}

/// Pages in use, not the file's length: removed rows free pages at once,
/// while the file shrinks only when the vacuum gets to it.
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * page) as u64)
}
