//! Incremental decoder for `Transfer-Encoding: chunked` bodies.

use memchr::memchr;

/// Longest chunk-size line accepted (size, extensions, line end).
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the chunk size.
    Size,
    /// After the digits: extensions or whitespace up to the LF.
    Ext,
    /// Chunk data; `size` bytes remain.
    Data,
    /// Expecting the CR LF (or bare LF) after chunk data.
    DataCr,
    /// Got the CR after chunk data, expecting LF.
    DataLf,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailer,
}

/// Chunked body decoder; bounded state, no buffering.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    has_digit: bool,
    line_len: usize,
    trailer_bytes: usize,
    trailer_line_nonempty: bool,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            has_digit: false,
            line_len: 0,
            trailer_bytes: 0,
            trailer_line_nonempty: false,
        }
    }

    fn end_size_line(&mut self) {
        self.line_len = 0;
        self.has_digit = false;
        self.state = if self.size == 0 { State::Trailer } else { State::Data };
    }

    /// Decodes from `data`, passing decoded bytes to `sink`. Returns the bytes consumed and whether the
    /// body is complete (then the consumed count stops right after it). `Err(consumed)` when the framing
    /// is broken.
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        max_trailer: usize,
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, bool), usize> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Size => {
                    let b = data[i];
                    i += 1;
                    self.line_len += 1;
                    if let Some(d) = (b as char).to_digit(16) {
                        if self.size > (u64::MAX >> 4) {
                            return Err(i);
                        }
                        self.size = (self.size << 4) | u64::from(d);
                        self.has_digit = true;
                        if self.line_len > MAX_CHUNK_LINE {
                            return Err(i);
                        }
                    } else if !self.has_digit {
                        return Err(i);
                    } else if b == b'\n' {
                        self.end_size_line();
                    } else if matches!(b, b';' | b' ' | b'\t' | b'\r') {
                        self.state = State::Ext;
                    } else {
                        return Err(i);
                    }
                }
                State::Ext => match memchr(b'\n', &data[i..]) {
                    Some(off) => {
                        self.line_len += off + 1;
                        i += off + 1;
                        if self.line_len > MAX_CHUNK_LINE {
                            return Err(i);
                        }
                        self.end_size_line();
                    }
                    None => {
                        self.line_len += data.len() - i;
                        i = data.len();
                        if self.line_len > MAX_CHUNK_LINE {
                            return Err(i);
                        }
                    }
                },
                State::Data => {
                    let n = (data.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    sink(&data[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr | State::DataLf => {
                    let b = data[i];
                    i += 1;
                    match (self.state, b) {
                        (State::DataCr, b'\r') => self.state = State::DataLf,
                        (_, b'\n') => self.state = State::Size,
                        _ => return Err(i),
                    }
                }
                State::Trailer => {
                    let (seg, end) = match memchr(b'\n', &data[i..]) {
                        Some(off) => (&data[i..i + off], Some(i + off + 1)),
                        None => (&data[i..], None),
                    };
                    if seg.iter().any(|&b| b != b'\r') {
                        self.trailer_line_nonempty = true;
                    }
                    let next = end.unwrap_or(data.len());
                    self.trailer_bytes += next - i;
                    i = next;
                    if self.trailer_bytes > max_trailer {
                        return Err(i);
                    }
                    if end.is_some() {
                        if !self.trailer_line_nonempty {
                            return Ok((i, true));
                        }
                        self.trailer_line_nonempty = false;
                    }
                }
            }
        }
        Ok((i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), ()> {
        let mut d = Chunked::new();
        let mut body = Vec::new();
        let mut used = 0;
        for p in parts {
            let (n, done) = d.feed(p, 1024, &mut |c: &[u8]| body.extend_from_slice(c)).map_err(|_| ())?;
            used += n;
            if done {
                return Ok((body, used, true));
            }
        }
        Ok((body, used, false))
    }

    #[test]
    fn basic_and_split() {
        let msg = b"5;ext=1\r\nhello\r\n000A\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (body, used, done) = decode(&[msg]).unwrap();
        assert!(done);
        assert_eq!(body, b"hello0123456789");
        assert_eq!(&msg[used..], b"NEXT");
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        let (body1, used1, done1) = decode(&bytes).unwrap();
        assert_eq!((body1, used1, done1), (body, used, done));
    }

    #[test]
    fn bare_lf_and_errors() {
        assert_eq!(decode(&[b"3\nabc\n0\n\n"]).unwrap().0, b"abc");
        assert!(decode(&[b"x\r\n"]).is_err());
        assert!(decode(&[b"3\r\nabcX"]).is_err());
        assert!(decode(&[b"11111111111111111\r\n"]).is_err());
        assert!(decode(&[b";\r\n"]).is_err());
        let long = [b'a'; 5000];
        assert!(decode(&[b"1;", &long]).is_err());
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend_from_slice(&[b'x'; 2000]);
        assert!(decode(&[&trailer]).is_err());
    }
}
