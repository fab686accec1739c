//! A check of the engine's journal that the engine does not make: that its batches' sequence
//! numbers rise.
//!
//! fjall (3.1) checks each journal batch against an xxh3 checksum of its items, but the batch's
//! header, which holds the sequence number, is outside it. A flipped bit that lowers a batch's
//! sequence number below the batch before makes its writes older than that batch's: a key both
//! wrote reverts to the older value, and the store would load a state never committed, with
//! every commit number in place (so the durable-commit watermark does not see it). Found by
//! the `store_recovery` fuzz target. Batches are written one at a time with sequence numbers
//! from one counter, so in a whole journal they never fall.
//!
//! This reads the journal format of fjall 3.1 (`journal::entry`): a batch is a Start entry
//! (tag 1, item count u32, sequence number u64, little-endian), its items (tag 2, value type,
//! compression, keyspace u64, key length u16, value length u32, on-disk value length u32, the
//! key, the value) and an End entry (tag 3, checksum u64, 4 magic bytes). It stops at the
//! first entry it cannot read: a torn tail is the engine's to deal with (it truncates it, and
//! the watermark catches a lost durable commit).

use std::path::{Path, PathBuf};

use crate::error::StoreError;

const START: u8 = 1;
const ITEM: u8 = 2;
const END: u8 = 3;
const CLEAR: u8 = 4;
const START_LEN: usize = 1 + 4 + 8;
const ITEM_HEADER_LEN: usize = 1 + 1 + 1 + 8 + 2 + 4 + 4;
const END_LEN: usize = 1 + 8 + 4;
const CLEAR_LEN: usize = 1 + 8;

/// Checks that the sequence numbers of the batches in the journal files of `engine_dir`
/// (`N.jnl`, in the order of N) never fall.
pub(crate) fn check_journal_order(engine_dir: &Path) -> Result<(), StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| StoreError::Io { path, error }
    };
    let mut journals: Vec<(u64, PathBuf)> = match std::fs::read_dir(engine_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jnl"))
            .filter_map(|path| Some((path.file_stem()?.to_str()?.parse().ok()?, path)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io(engine_dir)(error)),
    };
    journals.sort();
    let mut last: Option<u64> = None;
    for (_, path) in journals {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        for seqno in batch_seqnos(&bytes) {
            if last.is_some_and(|last| seqno < last) {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!(
                        "a journal batch has sequence number {seqno}, below the {} of the batch before it: its \
                         header is damaged",
                        last.unwrap_or_default()
                    ),
                });
            }
            last = Some(seqno);
        }
    }
    Ok(())
}

/// The sequence numbers of the whole batches at the start of `journal`, in order, up to the
/// first entry that cannot be read.
fn batch_seqnos(journal: &[u8]) -> Vec<u64> {
    let mut seqnos = Vec::new();
    let mut pos = 0;
    let mut open: Option<u64> = None;
    while let Some(&tag) = journal.get(pos) {
        let len = match tag {
            START if open.is_none() => START_LEN,
            ITEM if open.is_some() => {
                let Some(header) = journal.get(pos..pos + ITEM_HEADER_LEN) else { break };
                let key = usize::from(u16::from_le_bytes([header[11], header[12]]));
                let value = u32::from_le_bytes(header[17..21].try_into().expect("4 bytes")) as usize;
                ITEM_HEADER_LEN + key + value
            }
            END if open.is_some() => END_LEN,
            CLEAR => CLEAR_LEN,
            _ => break,
        };
        let Some(entry) = journal.get(pos..pos.saturating_add(len)) else { break };
        match tag {
            START => open = Some(u64::from_le_bytes(entry[5..13].try_into().expect("8 bytes"))),
            END => seqnos.extend(open.take()),
            _ => {}
        }
        pos += len;
    }
    seqnos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqno: u64, items: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = vec![START];
        out.extend_from_slice(&u32::try_from(items.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&seqno.to_le_bytes());
        for (key, value) in items {
            out.extend_from_slice(&[ITEM, 0, 0]);
            out.extend_from_slice(&7u64.to_le_bytes());
            out.extend_from_slice(&u16::try_from(key.len()).unwrap().to_le_bytes());
            for _ in 0..2 {
                out.extend_from_slice(&u32::try_from(value.len()).unwrap().to_le_bytes());
            }
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        out.push(END);
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(b"FJL\x03");
        out
    }

    #[test]
    fn reads_the_sequence_numbers_of_whole_batches_and_stops_at_a_torn_tail() {
        let mut journal = batch(5, &[(b"k", b"v"), (b"key", b"")]);
        journal.extend(batch(6, &[(b"a", b"value")]));
        let whole = journal.len();
        journal.extend(batch(9, &[(b"b", b"c")]));
        assert_eq!(batch_seqnos(&journal), [5, 6, 9]);
        assert_eq!(batch_seqnos(&journal[..whole + 20]), [5, 6], "a torn batch is not counted");
        journal.truncate(whole);
        journal.extend_from_slice(&[0; 32]);
        assert_eq!(batch_seqnos(&journal), [5, 6], "zeroes end it");
    }

    #[test]
    fn a_falling_sequence_number_is_refused_across_journal_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0.jnl"), batch(10, &[(b"k", b"v")])).unwrap();
        std::fs::write(dir.path().join("1.jnl"), batch(11, &[(b"k", b"w")])).unwrap();
        assert!(check_journal_order(dir.path()).is_ok());
        std::fs::write(dir.path().join("2.jnl"), batch(3, &[(b"k", b"x")])).unwrap();
        let error = check_journal_order(dir.path()).unwrap_err();
        assert!(matches!(&error, StoreError::Corrupt { path, .. } if path.ends_with("2.jnl")), "{error}");
    }
}
