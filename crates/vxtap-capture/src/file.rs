//! pcap and pcapng files: large reads into one reusable buffer, framing by [`crate::format`], records
//! handed out as slices of that buffer (no per-record copy or allocation).

use std::io::Read;
use std::path::{Path, PathBuf};

use vxtap_decap::LinkType;

use crate::format::{MAX_BLOCK, Parser, Step};
use crate::{CaptureError, Record, link_name};

/// Bytes asked of the OS per read: large enough that system calls cost nothing per record.
const READ_CHUNK: usize = 1 << 20;

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
/// Both formats in either byte order; pcap with micro- or nanosecond timestamps; pcapng with any
/// `if_tsresol`/`if_tsoffset`, several sections, enhanced, simple and obsolete packet blocks. All
/// interfaces of a pcapng file must share one link type (as libpcap requires); a second type is a
/// [`CaptureError::FileRead`] when met.
pub struct PcapFile {
    path: PathBuf,
    input: Input,
    parser: Parser,
    link: LinkType,
    dlt: i32,
    stats: FileStats,
    finished: bool,
}

/// The byte stream and the buffer it is read into; `buf[pos..end]` are read but not parsed yet.
struct Input {
    reader: Box<dyn Read + Send>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
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
    /// Opens a pcap or pcapng file.
    ///
    /// Errors, each naming the file: it cannot be opened or read ([`CaptureError::FileOpen`]), it is not a
    /// capture file or its header is cut ([`CaptureError::FileOpen`]), or its link type is not one
    /// vxtap decodes ([`CaptureError::FileLinkType`]).
    pub fn open(path: impl AsRef<Path>) -> Result<PcapFile, CaptureError> {
        let path = path.as_ref();
        let open_err = |reason: String| CaptureError::FileOpen { path: path.to_path_buf(), reason };
        let meta = std::fs::metadata(path).map_err(|e| open_err(e.to_string()))?;
        if meta.is_dir() {
            return Err(open_err("is a directory".into()));
        }
        let file = std::fs::File::open(path).map_err(|e| open_err(e.to_string()))?;
        PcapFile::from_reader(path, Box::new(file))
    }

    /// Reads a capture from any byte stream (a pipe, a socket, bytes in memory); `name` stands for it
    /// in errors. Errors as [`PcapFile::open`].
    pub fn from_reader(
        name: impl Into<PathBuf>,
        reader: Box<dyn Read + Send>,
    ) -> Result<PcapFile, CaptureError> {
        let path = name.into();
        let open_err = |reason: String| CaptureError::FileOpen { path: path.clone(), reason };
        let mut input = Input { reader, buf: Vec::new(), pos: 0, end: 0, eof: false };
        let mut parser = loop {
            match Parser::start(input.unparsed()) {
                Ok(Some((parser, used))) => {
                    input.pos = used;
                    break parser;
                }
                Ok(None) if input.eof && input.end == 0 => return Err(open_err("the file is empty".into())),
                Ok(None) if input.eof => return Err(open_err("the file header is truncated".into())),
                Ok(None) => input.fill(Parser::HEADER_BYTES).map_err(|e| open_err(e.to_string()))?,
                Err(reason) => return Err(open_err(reason)),
            }
        };
        // A pcapng file names its link type in its first interface description block.
        let raw = loop {
            if let Some(raw) = parser.link() {
                break raw;
            }
            match input.step(&mut parser) {
                Ok(Some(Step::Skip { used })) => input.pos += used,
                Ok(_) => {
                    return Err(open_err("no interface description block before the first packet".into()));
                }
                Err(reason) => return Err(open_err(reason)),
            }
        };
        let dlt = i32::try_from(raw).unwrap_or(i32::MAX);
        let Some(link) = LinkType::from_dlt(dlt) else {
            return Err(CaptureError::FileLinkType { path, dlt, name: link_name(dlt) });
        };
        Ok(PcapFile { path, input, parser, link, dlt, stats: FileStats::default(), finished: false })
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's link type (of its first interface, for pcapng).
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The link-type number in the file behind [`PcapFile::link_type`] (1 for Ethernet).
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
        loop {
            match self.input.step(&mut self.parser) {
                Ok(Some(Step::Record { ts_micros, data, orig_len, used })) => {
                    let start = self.input.pos;
                    self.input.pos += used;
                    self.stats.records += 1;
                    self.stats.bytes += data.len() as u64;
                    if data.len() < orig_len as usize {
                        self.stats.truncated += 1;
                    }
                    let data = &self.input.buf[start + data.start..start + data.end];
                    return Ok(Some(Record { ts_micros, data, orig_len }));
                }
                Ok(Some(Step::Skip { used })) => self.input.pos += used,
                Ok(Some(Step::NeedMore { total })) => {
                    let left = self.input.end - self.input.pos;
                    let reason =
                        format!("truncated: the last record or block needs {total} bytes, {left} remain");
                    return Err(self.read_error(reason));
                }
                Ok(None) => {
                    self.finished = true;
                    return Ok(None);
                }
                Err(reason) => return Err(self.read_error(reason)),
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

    fn read_error(&mut self, reason: String) -> CaptureError {
        self.finished = true;
        CaptureError::FileRead { path: self.path.clone(), records: self.stats.records, reason }
    }
}

impl Input {
    /// The bytes read but not parsed yet.
    fn unparsed(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// The next framing step, reading as needed: `Ok(None)` at a clean end of the file,
    /// `NeedMore` only when the file ends inside a record or block.
    fn step(&mut self, parser: &mut Parser) -> Result<Option<Step>, String> {
        loop {
            match parser.next(self.unparsed())? {
                Step::NeedMore { .. } if self.eof && self.pos == self.end => return Ok(None),
                Step::NeedMore { total } if !self.eof => self.fill(total).map_err(|e| e.to_string())?,
                step => return Ok(Some(step)),
            }
        }
    }

    /// Reads until `total` unparsed bytes are buffered or the input ends.
    fn fill(&mut self, total: usize) -> std::io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let want = total.clamp(READ_CHUNK, MAX_BLOCK);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < total && !self.eof {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
