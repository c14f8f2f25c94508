//! Any bytes, read as a capture file in reads of any size, give records or a typed error; never a
//! panic, and never more record bytes than were given.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use vxtap_capture::PcapFile;

/// Hands out its bytes `step` at a time, so records straddle reads everywhere.
struct Chunks {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, data)) = input.split_first() else { return };
    let reader = Chunks { data: data.to_vec(), at: 0, step: usize::from(step).max(1) * 7 };
    let Ok(mut file) = PcapFile::from_reader("fuzz", Box::new(reader)) else { return };
    let mut total = 0usize;
    if let Ok(stats) = file.for_each(|rec| total += rec.data.len()) {
        assert_eq!(stats.bytes as usize, total);
    }
    assert!(total <= data.len());
});
