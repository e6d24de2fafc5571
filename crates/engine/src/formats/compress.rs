//! Compressing a part: one gzip member or one zstd frame per part, so that the report (the
//! parts concatenated) is one valid gzip or zstd stream without re-encoding.

use std::io::{self, Write};

use flate2::write::GzEncoder;

use reportjob_core::plan::PartCompression;

/// zstd's default level: fast, and about gzip's ratio or better.
const ZSTD_LEVEL: i32 = 3;

/// A part's compressor, writing into a buffer that is drained as it fills.
pub enum Compressor {
    /// A gzip member.
    Gzip(GzEncoder<Vec<u8>>),
    /// A zstd frame.
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    /// A compressor for `compression`, or `None` for plain parts.
    pub fn new(compression: PartCompression) -> io::Result<Option<Compressor>> {
        Ok(match compression {
            PartCompression::None => None,
            PartCompression::Gzip => Some(Compressor::Gzip(GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            PartCompression::Zstd => Some(Compressor::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                ZSTD_LEVEL,
            )?)),
        })
    }

    /// Compresses `data`.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Gzip(e) => e.write_all(data),
            Compressor::Zstd(e) => e.write_all(data),
        }
    }

    /// The compressed bytes produced so far (and not yet taken).
    pub fn take_output(&mut self) -> Vec<u8> {
        match self {
            Compressor::Gzip(e) => std::mem::take(e.get_mut()),
            Compressor::Zstd(e) => std::mem::take(e.get_mut()),
        }
    }

    /// Ends the member or frame and returns the remaining bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(c: PartCompression, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut comp = Compressor::new(c).unwrap().unwrap();
        for p in pieces {
            comp.write_all(p).unwrap();
            out.extend(comp.take_output());
        }
        out.extend(comp.finish().unwrap());
        out
    }

    #[test]
    fn concatenated_parts_are_one_stream() {
        for c in [PartCompression::Gzip, PartCompression::Zstd] {
            let mut all = compress(c, &[b"a,b\n", b"1,2\n"]);
            all.extend(compress(c, &[b"3,4\n"]));
            let mut text = String::new();
            match c {
                PartCompression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&all[..])
                        .read_to_string(&mut text)
                        .unwrap();
                }
                _ => {
                    zstd::stream::read::Decoder::new(&all[..])
                        .unwrap()
                        .read_to_string(&mut text)
                        .unwrap();
                }
            }
            assert_eq!(text, "a,b\n1,2\n3,4\n", "{c:?}");
        }
    }
}
