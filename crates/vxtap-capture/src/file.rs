//! pcap and pcapng files, read with libpcap.

use std::path::{Path, PathBuf};

use pcap::{Capture, Offline};
use vxtap_decap::LinkType;

use crate::{CaptureError, Record, link_name, pcap_reason};

/// Totals of what a [`PcapFile`] delivered so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Records delivered.
    pub records: u64,
    /// Captured bytes delivered (sum of the records' `data` lengths).
    pub bytes: u64,
    /// Records whose captured length is shorter than their original length (snaplen cut them).
    pub truncated: u64,
}

/// An open pcap or pcapng file, read record by record.
///
/// A pcapng file whose interfaces use different link types is refused by libpcap when the second type
/// is met; that surfaces as [`CaptureError::FileRead`].
pub struct PcapFile {
    path: PathBuf,
    cap: Capture<Offline>,
    link: LinkType,
    dlt: i32,
    stats: FileStats,
    finished: bool,
}

impl std::fmt::Debug for PcapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapFile")
            .field("path", &self.path)
            .field("link", &self.link)
            .field("dlt", &self.dlt)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl PcapFile {
    /// Opens a pcap or pcapng file (any byte order, micro- or nanosecond timestamps).
    ///
    /// Errors, each naming the file: it cannot be opened or read ([`CaptureError::FileOpen`]), it is not a
    /// capture file ([`CaptureError::FileOpen`]), or its link type is not one vxtap decodes
    /// ([`CaptureError::FileLinkType`]).
    pub fn open(path: impl AsRef<Path>) -> Result<PcapFile, CaptureError> {
        let path = path.as_ref();
        let open_err = |reason: String| CaptureError::FileOpen { path: path.to_path_buf(), reason };
        // std gives clearer messages than libpcap for missing files, permissions and directories.
        let meta = std::fs::metadata(path).map_err(|e| open_err(e.to_string()))?;
        if meta.is_dir() {
            return Err(open_err("is a directory".into()));
        }
        std::fs::File::open(path).map_err(|e| open_err(e.to_string()))?;
        if path.to_str().is_none() {
            return Err(open_err("path is not valid UTF-8, which libpcap requires".into()));
        }
        let cap = Capture::from_file(path).map_err(|e| open_err(pcap_reason(e)))?;
        let dlt = cap.get_datalink().0;
        let Some(link) = LinkType::from_dlt(dlt) else {
            return Err(CaptureError::FileLinkType { path: path.to_path_buf(), dlt, name: link_name(dlt) });
        };
        Ok(PcapFile {
            path: path.to_path_buf(),
            cap,
            link,
            dlt,
            stats: FileStats::default(),
            finished: false,
        })
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's link type (of its first interface, for pcapng).
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The raw pcap link-type number (DLT) behind [`PcapFile::link_type`].
    pub fn dlt(&self) -> i32 {
        self.dlt
    }

    /// What has been delivered so far.
    pub fn stats(&self) -> FileStats {
        self.stats
    }

    /// The next record, `Ok(None)` at the end of the file. A truncated or corrupt record is a
    /// [`CaptureError::FileRead`]; after it (or after the end) every call returns `Ok(None)`.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        match self.cap.next_packet() {
            Ok(packet) => {
                let rec = Record::from_packet(&packet);
                self.stats.records += 1;
                self.stats.bytes += rec.data.len() as u64;
                if (rec.data.len() as u64) < u64::from(rec.orig_len) {
                    self.stats.truncated += 1;
                }
                Ok(Some(rec))
            }
            Err(pcap::Error::NoMorePackets) => {
                self.finished = true;
                Ok(None)
            }
            Err(e) => {
                self.finished = true;
                Err(CaptureError::FileRead {
                    path: self.path.clone(),
                    records: self.stats.records,
                    reason: pcap_reason(e),
                })
            }
        }
    }

    /// Hands every remaining record to `f`, in file order, and returns the totals. On a read error, the
    /// records before it have been delivered and the error says how many.
    pub fn for_each<F>(&mut self, mut f: F) -> Result<FileStats, CaptureError>
    where
        F: FnMut(Record<'_>),
    {
        while let Some(rec) = self.next_record()? {
            f(rec);
        }
        Ok(self.stats)
    }
}
