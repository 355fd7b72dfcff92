//! Notification bodies live outside sled, in append-only segment files under `bodies/`; the
//! outbox entries in sled hold a [`BodyRef`] to them.
//!
//! Why: sled 0.34 never gives back the space of removed values, so a store that had delivered a
//! million notifications stayed at hundreds of MiB. A segment file is deleted as soon as every
//! body in it has been acknowledged (or dead-lettered, which copies the body), so acknowledged
//! bodies cost no disk at all. Each append is fsynced before the sled commit that refers to it:
//! a crash in between leaves only unreferenced bytes, removed with their segment.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// A new segment is started past this size.
const SEGMENT_MAX_BYTES: u64 = 32 << 20;
/// When the active segment's last body is acknowledged and it is at least this big, a new one
/// is started so the old one can go (smaller ones are kept, to not churn files when idle).
const ROLL_WHEN_EMPTY_BYTES: u64 = 1 << 20;
const SEGMENT_SUFFIX: &str = ".seg";

/// Where one body is: segment, byte range, and the CRC-32 of the stored (compressed) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

pub(crate) struct BodyLog {
    dir: PathBuf,
    state: Mutex<LogState>,
}

struct LogState {
    active: u64,
    active_len: u64,
    writer: Arc<File>,
    /// Open segments, for reads (the active one included).
    files: HashMap<u64, Arc<File>>,
    /// Bodies still referenced (or about to be) per segment.
    live: HashMap<u64, u64>,
}

impl BodyLog {
    /// Opens the log in `dir`, deleting every segment that `live` (references counted from the
    /// outbox) does not mention, and starts a fresh segment for appends. A referenced segment
    /// that is missing is logged; reading its bodies then fails as corrupt data, and the store
    /// sets those entries aside, rather than one lost file keeping every queue from starting.
    pub(crate) fn open(dir: &Path, live: HashMap<u64, u64>) -> io::Result<BodyLog> {
        fs::create_dir_all(dir)?;
        let mut files = HashMap::new();
        let mut newest = 0;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(segment) = segment_number(&path) else {
                continue;
            };
            newest = newest.max(segment);
            if live.get(&segment).copied().unwrap_or(0) == 0 {
                fs::remove_file(&path)?;
            } else {
                files.insert(segment, Arc::new(File::open(&path)?));
            }
        }
        let missing: Vec<u64> = live
            .keys()
            .filter(|s| !files.contains_key(s))
            .copied()
            .collect();
        for segment in &missing {
            tracing::error!(
                "store: {} is missing: {} queued notification(s) refer to it; each is moved aside to the dead letters as corrupt when it reaches the head of its queue",
                segment_path(dir, *segment).display(),
                live[segment]
            );
        }
        // Past every referenced segment too: a missing one's number must never be reused, or
        // its references would read the new bodies.
        let active = live.keys().fold(newest, |newest, s| newest.max(*s)) + 1;
        let writer = Arc::new(create_segment(dir, active)?);
        files.insert(active, writer.clone());
        Ok(BodyLog {
            dir: dir.to_path_buf(),
            state: Mutex::new(LogState {
                active,
                active_len: 0,
                writer,
                files,
                live,
            }),
        })
    }

    /// Compresses and appends `bodies`, and fsyncs them: when this returns they are on disk.
    pub(crate) fn append(&self, bodies: &[&[u8]]) -> io::Result<Vec<BodyRef>> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        // Compressed, checksummed and laid out before taking the lock: appends of several
        // pollers overlap here, and the lock only places and writes the buffer.
        let mut buffer = Vec::new();
        let mut pieces: Vec<(u64, u32, u32)> = Vec::with_capacity(bodies.len());
        for body in bodies {
            let stored = lz4_flex::compress_prepend_size(body);
            let len = u32::try_from(stored.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a body over 4 GiB"))?;
            pieces.push((buffer.len() as u64, len, crc32fast::hash(&stored)));
            buffer.extend_from_slice(&stored);
        }
        let (writer, refs) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let total = buffer.len() as u64;
            if state.active_len > 0 && state.active_len + total > SEGMENT_MAX_BYTES {
                self.roll(&mut state)?;
            }
            let base = state.active_len;
            // Written at an explicit offset under the lock: the offsets are where the bytes
            // land, and a write that fails halfway is simply overwritten by the next one.
            state.writer.write_all_at(&buffer, base)?;
            state.active_len = base + total;
            let active = state.active;
            *state.live.entry(active).or_default() += pieces.len() as u64;
            let refs: Vec<BodyRef> = pieces
                .iter()
                .map(|&(at, len, crc)| BodyRef {
                    segment: active,
                    offset: base + at,
                    len,
                    crc,
                })
                .collect();
            (state.writer.clone(), refs)
        };
        // Outside the lock: one fsync covers everything written before it, other appends go on.
        writer.sync_data()?;
        Ok(refs)
    }

    /// Reads back one body, checking its CRC.
    pub(crate) fn read(&self, body: &BodyRef) -> io::Result<Vec<u8>> {
        self.read_many(std::slice::from_ref(body))
            .pop()
            .expect("one result per body")
    }

    /// The stored (compressed) bytes of one body as they are, unchecked: kept when a damaged
    /// body is set aside.
    pub(crate) fn read_stored(&self, body: &BodyRef) -> io::Result<Vec<u8>> {
        self.read_run(std::slice::from_ref(body))
    }

    /// Reads back several bodies, one result each: bodies that lie end to end in one segment
    /// (a queue's entries usually do, they were appended together) take a single read.
    pub(crate) fn read_many(&self, bodies: &[BodyRef]) -> Vec<io::Result<Vec<u8>>> {
        let mut results = Vec::with_capacity(bodies.len());
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start + 1;
            while end < bodies.len() {
                let (previous, next) = (&bodies[end - 1], &bodies[end]);
                let follows = next.segment == previous.segment
                    && next.offset == previous.offset + u64::from(previous.len);
                if !follows {
                    break;
                }
                end += 1;
            }
            match self.read_run(&bodies[start..end]) {
                Ok(bytes) => {
                    let mut at = 0;
                    for body in &bodies[start..end] {
                        let stored = &bytes[at..at + body.len as usize];
                        at += body.len as usize;
                        results.push(self.unpack(body, stored));
                    }
                }
                Err(error) => results.extend(
                    (start..end).map(|_| Err(io::Error::new(error.kind(), error.to_string()))),
                ),
            }
            start = end;
        }
        results
    }

    /// The stored bytes of bodies that lie end to end, in one read.
    fn read_run(&self, run: &[BodyRef]) -> io::Result<Vec<u8>> {
        let first = &run[0];
        let file = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.files.get(&first.segment).cloned()
        };
        let file = file.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing",
                    segment_path(&self.dir, first.segment).display()
                ),
            )
        })?;
        let total: usize = run.iter().map(|b| b.len as usize).sum();
        let mut bytes = vec![0; total];
        file.read_exact_at(&mut bytes, first.offset)
            .map_err(|error| {
                let path = segment_path(&self.dir, first.segment);
                io::Error::new(
                    error.kind(),
                    format!("{}: {error} at offset {}", path.display(), first.offset),
                )
            })?;
        Ok(bytes)
    }

    /// Checks one body's stored bytes against its CRC and decompresses them.
    fn unpack(&self, body: &BodyRef, stored: &[u8]) -> io::Result<Vec<u8>> {
        let invalid = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {what} at offset {}",
                    segment_path(&self.dir, body.segment).display(),
                    body.offset
                ),
            )
        };
        if crc32fast::hash(stored) != body.crc {
            return Err(invalid("checksum mismatch".into()));
        }
        lz4_flex::decompress_size_prepended(stored).map_err(|e| invalid(e.to_string()))
    }

    /// Drops references. Returns the segments that no longer hold a live body: delete them
    /// with [`BodyLog::delete`] once the removal of their references is durable.
    pub(crate) fn release(&self, bodies: &[BodyRef]) -> io::Result<Vec<u64>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut drained = Vec::new();
        for body in bodies {
            let Some(live) = state.live.get_mut(&body.segment) else {
                continue;
            };
            *live = live.saturating_sub(1);
            if *live > 0 || drained.contains(&body.segment) {
                continue;
            }
            if body.segment != state.active {
                drained.push(body.segment);
            } else if state.active_len >= ROLL_WHEN_EMPTY_BYTES {
                self.roll(&mut state)?;
                drained.push(body.segment);
            }
        }
        Ok(drained)
    }

    /// Deletes segments returned by [`BodyLog::release`] if they are still unreferenced.
    pub(crate) fn delete(&self, segments: &[u64]) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for segment in segments {
            if *segment == state.active || state.live.get(segment).is_some_and(|n| *n > 0) {
                continue;
            }
            state.live.remove(segment);
            if state.files.remove(segment).is_some() {
                fs::remove_file(segment_path(&self.dir, *segment))?;
            }
        }
        Ok(())
    }

    /// Starts a new active segment; the old one stays open for reads.
    fn roll(&self, state: &mut LogState) -> io::Result<()> {
        let next = state.active + 1;
        let writer = Arc::new(create_segment(&self.dir, next)?);
        // Appends to the old segment are already synced by their own callers.
        state.files.insert(next, writer.clone());
        state.writer = writer;
        state.active = next;
        state.active_len = 0;
        Ok(())
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}{SEGMENT_SUFFIX}"))
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(SEGMENT_SUFFIX)?
        .parse()
        .ok()
}

fn create_segment(dir: &Path, segment: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(segment_path(dir, segment))?;
    // The new name must survive a crash too, or a synced body could vanish with its file.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(dir: &Path) -> Vec<u64> {
        let mut found: Vec<u64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| segment_number(&e.unwrap().path()))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn bodies_read_back_and_a_drained_segment_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let log = BodyLog::open(dir.path(), HashMap::new()).unwrap();
        let big = vec![b'x'; 3 << 20];
        let refs = log.append(&[b"{\"a\":1}", &big]).unwrap();
        assert_eq!(log.read(&refs[0]).unwrap(), b"{\"a\":1}");
        assert_eq!(log.read(&refs[1]).unwrap(), big);
        assert!(
            log.release(&refs[..1]).unwrap().is_empty(),
            "one body still live"
        );
        // The active segment is empty now but under ROLL_WHEN_EMPTY_BYTES on disk (it
        // compresses well): kept.
        assert!(log.release(&refs[1..2]).unwrap().is_empty());
        assert_eq!(segments(dir.path()).len(), 1);
    }

    #[test]
    fn bodies_appended_together_read_back_together_and_apart() {
        let dir = tempfile::tempdir().unwrap();
        let log = BodyLog::open(dir.path(), HashMap::new()).unwrap();
        let texts: [&[u8]; 3] = [b"{\"n\":1}", b"{\"n\":22}", b"{\"n\":333}"];
        let mut refs = log.append(&texts).unwrap();
        refs.extend(log.append(&[b"{\"n\":4444}"]).unwrap());
        // Out of order too: the runs split where the bodies are not end to end.
        let order = [0, 1, 2, 3, 2, 0];
        let picked: Vec<BodyRef> = order.iter().map(|i| refs[*i]).collect();
        let read: Vec<Vec<u8>> = log
            .read_many(&picked)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let all: [&[u8]; 4] = [texts[0], texts[1], texts[2], b"{\"n\":4444}"];
        let expected: Vec<&[u8]> = order.iter().map(|i| all[*i]).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn full_segments_roll_and_go_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let log = BodyLog::open(dir.path(), HashMap::new()).unwrap();
        // Random-ish bytes do not compress: two appends overflow one segment.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(SEGMENT_MAX_BYTES as usize * 2 / 3))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let first = log.append(&[&noise]).unwrap()[0];
        let second = log.append(&[&noise]).unwrap()[0];
        assert_ne!(first.segment, second.segment);
        let doomed = log.release(&[first]).unwrap();
        assert_eq!(doomed, [first.segment]);
        log.delete(&doomed).unwrap();
        assert_eq!(segments(dir.path()), [second.segment]);
        assert_eq!(log.read(&second).unwrap(), noise);
        assert!(
            log.read(&first)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }

    #[test]
    fn reopening_keeps_referenced_segments_only_and_a_missing_one_fails_its_reads() {
        let dir = tempfile::tempdir().unwrap();
        let kept = {
            let log = BodyLog::open(dir.path(), HashMap::new()).unwrap();
            log.append(&[b"kept"]).unwrap()[0]
        };
        // The referenced segment is kept; the fresh one made by the reopen is not in `live`.
        let log = BodyLog::open(dir.path(), HashMap::from([(kept.segment, 1)])).unwrap();
        assert_eq!(log.read(&kept).unwrap(), b"kept");
        drop(log);
        fs::remove_file(segment_path(dir.path(), kept.segment)).unwrap();
        // Opens all the same (other queues go on); the lost body reads as missing, also once
        // new bodies are written (never under the missing segment's number).
        let log = BodyLog::open(dir.path(), HashMap::from([(kept.segment, 2)])).unwrap();
        let new = log.append(&[b"new"]).unwrap()[0];
        assert_ne!(new.segment, kept.segment);
        assert_eq!(log.read(&new).unwrap(), b"new");
        let error = log.read(&kept).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("is missing"), "{error}");
    }

    #[test]
    fn a_damaged_body_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let log = BodyLog::open(dir.path(), HashMap::new()).unwrap();
        let body = log.append(&[b"{\"id\":1}"]).unwrap()[0];
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), body.segment))
            .unwrap();
        file.write_all_at(b"\xff", body.offset + 4).unwrap();
        let error = log.read(&body).unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
    }
}
