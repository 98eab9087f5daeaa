//! The decision log on disk: a bounded ring of JSONL segment files.
//!
//! Records are appended to the newest segment; when it reaches its share
//! of the budget (`max_bytes / segments`) a new one starts and the oldest
//! beyond `segments` is deleted, so the log never holds more than about
//! `max_bytes` and always holds the most recent decisions. Segment names
//! carry a sequence number, so a restarted node continues the ring.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use switchyard_types::DecisionRecord;

use crate::MetricsError;

const PREFIX: &str = "decisions-";
const SUFFIX: &str = ".jsonl";

/// Write buffer of the segment being written. A node logs a few hundred
/// bytes per request, thousands of times a second: a large buffer makes
/// that a write system call every few dozen milliseconds rather than every
/// ~16 records (the default 8 KiB), and the buffer is flushed every second
/// anyway ([`crate::decision_log::FLUSH_EVERY`]).
const WRITE_BUFFER: usize = 256 * 1024;

/// Which records a query wants; every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionQuery {
    /// At or after this instant (milliseconds since the Unix epoch).
    pub since_ms: Option<u64>,
    pub router: Option<String>,
    pub route: Option<String>,
    pub model: Option<String>,
    /// At most this many, the most recent ones.
    pub limit: Option<usize>,
}

impl DecisionQuery {
    pub fn matches(&self, record: &DecisionRecord) -> bool {
        self.since_ms.is_none_or(|since| record.unix_ms >= since)
            && self.router.as_ref().is_none_or(|router| record.router.as_ref() == Some(router))
            && self.route.as_ref().is_none_or(|route| &record.route == route)
            && self.model.as_ref().is_none_or(|model| record.model.as_ref() == Some(model))
    }
}

/// The ring of segment files in one directory.
#[derive(Debug)]
pub struct DecisionRing {
    dir: PathBuf,
    segment_bytes: u64,
    segments: usize,
    /// Sequence number of the segment being written.
    seq: u64,
    /// The segment being written (named in errors).
    current_path: PathBuf,
    current: BufWriter<File>,
    current_bytes: u64,
    /// The record being encoded, reused from one append to the next.
    line: Vec<u8>,
}

fn segment_name(seq: u64) -> String {
    format!("{PREFIX}{seq:012}{SUFFIX}")
}

/// Segment `seq` in `dir`, opened (or created) for appending, with its path.
fn open_segment(dir: &Path, seq: u64) -> Result<(PathBuf, BufWriter<File>), MetricsError> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
    Ok((path, BufWriter::with_capacity(WRITE_BUFFER, file)))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MetricsError + '_ {
    move |source| MetricsError::DecisionLog(format!("{}: {source}", path.display()))
}

/// Sequence numbers of the segments in `dir`, oldest first.
fn existing(dir: &Path) -> Result<Vec<u64>, MetricsError> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

impl DecisionRing {
    /// Opens (or creates) the ring in `dir`, holding about `max_bytes` in
    /// `segments` files.
    pub fn open(dir: &Path, max_bytes: u64, segments: usize) -> Result<DecisionRing, MetricsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segments = segments.max(2);
        let seq = existing(dir)?.last().copied().unwrap_or(0);
        let (path, current) = open_segment(dir, seq)?;
        let current_bytes = current.get_ref().metadata().map_err(io(&path))?.len();
        Ok(DecisionRing {
            dir: dir.to_owned(),
            segment_bytes: (max_bytes / segments as u64).max(4096),
            segments,
            seq,
            current,
            current_path: path,
            current_bytes,
            line: Vec::with_capacity(1024),
        })
    }

    /// Appends one record (buffered; [`DecisionRing::flush`] writes it out).
    pub fn append(&mut self, record: &DecisionRecord) -> Result<(), MetricsError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(|err| MetricsError::DecisionLog(err.to_string()))?;
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if self.current_bytes > 0 && self.current_bytes + len > self.segment_bytes {
            self.rotate()?;
        }
        self.current.write_all(&self.line).map_err(io(&self.current_path))?;
        self.current_bytes += len;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), MetricsError> {
        self.flush()?;
        self.seq += 1;
        (self.current_path, self.current) = open_segment(&self.dir, self.seq)?;
        self.current_bytes = 0;
        let seqs = existing(&self.dir)?;
        for old in seqs.iter().take(seqs.len().saturating_sub(self.segments)) {
            let path = self.dir.join(segment_name(*old));
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), MetricsError> {
        self.current.flush().map_err(io(&self.current_path))
    }

    /// The records matching `query`, oldest first, as the JSON lines they
    /// are stored as. Flushes first, so every appended record is seen.
    pub fn query(&mut self, query: &DecisionQuery) -> Result<Vec<String>, MetricsError> {
        self.flush()?;
        let mut lines = std::collections::VecDeque::new();
        for seq in existing(&self.dir)? {
            let path = self.dir.join(segment_name(seq));
            // A segment deleted by a rotation since the listing is skipped.
            let Ok(file) = File::open(&path) else { continue };
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io(&path))?;
                // A torn last line (a crash mid-write) is skipped.
                let Ok(record) = serde_json::from_str::<DecisionRecord>(&line) else { continue };
                if query.matches(&record) {
                    lines.push_back(line);
                    if query.limit.is_some_and(|limit| lines.len() > limit) {
                        lines.pop_front();
                    }
                }
            }
        }
        Ok(lines.into())
    }

    /// Bytes on disk across every segment.
    pub fn bytes(&self) -> u64 {
        existing(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|seq| std::fs::metadata(self.dir.join(segment_name(*seq))).ok())
            .map(|meta| meta.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;

    fn record(i: u64, route: &str) -> DecisionRecord {
        DecisionRecord {
            time: format!("t{i}"),
            unix_ms: 1_000 + i,
            router: Some("eng".to_owned()),
            route: route.to_owned(),
            model: Some(if i.is_multiple_of(2) { "a" } else { "b" }.to_owned()),
            outcome: "success".to_owned(),
            scores: vec![("debugging".to_owned(), 0.5)],
            classifier: Some("lexical".to_owned()),
            affinity: "none".to_owned(),
            fallback: route == "other",
            failed: Vec::new(),
            decision_ms: 1.0,
            ttft_ms: Some(2.0),
            latency_ms: 3.0,
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            cost_usd: Some(0.001),
            savings_usd: None,
            prompt_sha256: "00".repeat(32),
            preview: Some("fix it".to_owned()),
        }
    }

    #[test]
    fn queries_filter_and_keep_the_most_recent() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = DecisionRing::open(dir.path(), 1 << 20, 4).unwrap();
        for i in 0..10 {
            ring.append(&record(i, if i % 3 == 0 { "other" } else { "debugging" })).unwrap();
        }
        let other = ring.query(&DecisionQuery { route: Some("other".to_owned()), ..DecisionQuery::default() }).unwrap();
        assert_eq!(other.len(), 4, "0, 3, 6, 9");
        let recent = ring
            .query(&DecisionQuery { since_ms: Some(1_005), model: Some("b".to_owned()), limit: Some(2), ..DecisionQuery::default() })
            .unwrap();
        let ids: Vec<u64> = recent.iter().map(|l| serde_json::from_str::<DecisionRecord>(l).unwrap().unix_ms).collect();
        assert_eq!(ids, vec![1_007, 1_009]);
    }

    #[test]
    fn the_ring_stays_within_its_budget_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 4 * 4096;
        let mut ring = DecisionRing::open(dir.path(), budget, 4).unwrap();
        for i in 0..2_000 {
            ring.append(&record(i, "debugging")).unwrap();
        }
        ring.flush().unwrap();
        assert!(ring.bytes() <= budget + 4096, "{} bytes", ring.bytes());
        assert_eq!(existing(dir.path()).unwrap().len(), 4);
        let all = ring.query(&DecisionQuery::default()).unwrap();
        let last: DecisionRecord = serde_json::from_str(all.last().unwrap()).unwrap();
        assert_eq!(last.unix_ms, 1_000 + 1_999, "the newest is kept");
        let first: DecisionRecord = serde_json::from_str(&all[0]).unwrap();
        assert!(first.unix_ms > 1_000, "the oldest were dropped");

        // A restarted node continues the ring where it was.
        drop(ring);
        let mut ring = DecisionRing::open(dir.path(), budget, 4).unwrap();
        ring.append(&record(5_000, "other")).unwrap();
        let newest = ring.query(&DecisionQuery { limit: Some(1), ..DecisionQuery::default() }).unwrap();
        assert_eq!(serde_json::from_str::<DecisionRecord>(&newest[0]).unwrap().unix_ms, 6_000);
        assert!(ring.query(&DecisionQuery::default()).unwrap().len() > 1);
    }

    #[test]
    fn a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = DecisionRing::open(dir.path(), 1 << 20, 4).unwrap();
        ring.append(&record(1, "debugging")).unwrap();
        ring.flush().unwrap();
        drop(ring);
        let path = dir.path().join(segment_name(0));
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"time\": \"t2\", \"unix").unwrap();
        let mut ring = DecisionRing::open(dir.path(), 1 << 20, 4).unwrap();
        assert_eq!(ring.query(&DecisionQuery::default()).unwrap().len(), 1);
    }
}
