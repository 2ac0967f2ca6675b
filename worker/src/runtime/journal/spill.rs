//! An attempt's spill file: its newest unacknowledged events, past what the journal keeps
//! in memory, as length-delimited `TaskEvent`s (the wire form, converted at the boundary).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cloudai_proto::convert::report::{report_event, task_event};
use cloudai_proto::pb;
use cloudai_queue::ReportEvent;
use prost::Message;

use super::{AttemptKey, Entry};

/// Events of one attempt on disk: the newest ones, past what memory holds.
pub(super) struct Spill {
    pub(super) path: PathBuf,
    file: File,
    /// Where the next unread event starts.
    pub(super) read_at: u64,
    /// Bytes written.
    pub(super) len: u64,
}

fn spill_path(dir: &Path, key: &AttemptKey) -> PathBuf {
    dir.join(format!("{}-{}.spill", key.0, key.1))
}

/// Appends `event` to the attempt's spill file (creating it); returns the bytes written.
pub(super) fn spill_append(
    dir: &Path,
    key: &AttemptKey,
    entry: &mut Entry,
    event: &ReportEvent,
) -> std::io::Result<u64> {
    if entry.spill.is_none() {
        std::fs::create_dir_all(dir)?;
        let path = spill_path(dir, key);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        entry.spill = Some(Spill {
            path,
            file,
            read_at: 0,
            len: 0,
        });
    }
    let spill = entry.spill.as_mut().expect("created above");
    let bytes = task_event(&key.0, key.1, event).encode_length_delimited_to_vec();
    spill.file.seek(SeekFrom::Start(spill.len))?;
    spill.file.write_all(&bytes)?;
    spill.len += bytes.len() as u64;
    Ok(bytes.len() as u64)
}

/// Reads the next spilled event, with the bytes it took; `None` at the end.
pub(super) fn spill_read(spill: &mut Spill) -> std::io::Result<Option<(ReportEvent, u64)>> {
    if spill.read_at >= spill.len {
        return Ok(None);
    }
    spill.file.seek(SeekFrom::Start(spill.read_at))?;
    let mut reader = BufReader::new(&spill.file).take(spill.len - spill.read_at);
    let mut head = Vec::new();
    // A varint length prefix is at most 10 bytes.
    let mut byte = [0u8; 1];
    loop {
        reader.read_exact(&mut byte)?;
        head.push(byte[0]);
        if byte[0] & 0x80 == 0 || head.len() == 10 {
            break;
        }
    }
    let len = prost::decode_length_delimiter(head.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let wire = pb::TaskEvent::decode(body.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let taken = (head.len() + len) as u64;
    spill.read_at += taken;
    report_event(wire)
        .map(|event| Some((event, taken)))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
