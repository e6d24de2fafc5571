//! A zip archive written front to back into a seekable file, as a workbook needs it: every
//! entry deflated; an entry's bytes may arrive already compressed, in pieces (a sheet from
//! its parts), its CRC-32 and sizes written into its local header once it ends. An entry is
//! at most 4 GiB (the sheets are cut to fit), so only offsets may need ZIP64: the central
//! directory gives them a ZIP64 field, and the archive a ZIP64 end record, only when they do.

use std::io::{self, Seek, SeekFrom, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// Deflate.
const METHOD: u16 = 8;
/// 1980-01-01 00:00, so that the same rows make the same bytes.
const DOS_DATE: u16 = (1 << 5) | 1;
const U32_MAX: u64 = u32::MAX as u64;

/// One entry, as the central directory lists it.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    crc32: u32,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

/// A zip archive being written.
pub struct ZipWriter<W: Write + Seek> {
    out: W,
    /// Bytes written so far.
    at: u64,
    entries: Vec<Entry>,
    /// The entry whose bytes are arriving.
    open: Option<Entry>,
}

fn too_large(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what} is over 4 GiB"))
}

impl<W: Write + Seek> ZipWriter<W> {
    /// An archive written into `out` from its current position on.
    pub fn new(out: W) -> ZipWriter<W> {
        ZipWriter {
            out,
            at: 0,
            entries: Vec::new(),
            open: None,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Starts entry `name`; its deflated bytes follow through [`ZipWriter::write_data`].
    pub fn start_entry(&mut self, name: &str) -> io::Result<()> {
        if self.open.is_some() {
            return Err(io::Error::other("a zip entry is already open"));
        }
        let entry = Entry {
            name: name.to_string(),
            crc32: 0,
            compressed: 0,
            uncompressed: 0,
            offset: self.at,
        };
        let header = local_header(&entry);
        self.put(&header)?;
        self.open = Some(entry);
        Ok(())
    }

    /// Appends deflated bytes to the open entry.
    pub fn write_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(entry) = self.open.as_mut() else {
            return Err(io::Error::other("no zip entry is open"));
        };
        entry.compressed += bytes.len() as u64;
        if entry.compressed > U32_MAX {
            return Err(too_large("a zip entry's compressed data"));
        }
        self.put(bytes)
    }

    /// Ends the open entry, whose uncompressed bytes were `uncompressed` with CRC-32 `crc32`,
    /// writing them into its local header.
    pub fn end_entry(&mut self, crc32: u32, uncompressed: u64) -> io::Result<()> {
        let Some(mut entry) = self.open.take() else {
            return Err(io::Error::other("no zip entry is open"));
        };
        if uncompressed > U32_MAX {
            return Err(too_large("a zip entry"));
        }
        entry.crc32 = crc32;
        entry.uncompressed = uncompressed;
        self.out.seek(SeekFrom::Start(entry.offset))?;
        self.out.write_all(&local_header(&entry))?;
        self.out.seek(SeekFrom::Start(self.at))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Writes entry `name` holding `data`, deflated.
    pub fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let deflated = deflate_whole(data)?;
        self.start_entry(name)?;
        self.write_data(&deflated)?;
        self.end_entry(crc32fast::hash(data), data.len() as u64)
    }

    /// Writes the central directory (listing the entries named in `first` before the others)
    /// and returns the output.
    pub fn finish(mut self, first: &[&str]) -> io::Result<W> {
        if self.open.is_some() {
            return Err(io::Error::other("a zip entry is still open"));
        }
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by_key(|e| {
            first
                .iter()
                .position(|f| *f == e.name)
                .unwrap_or(first.len())
        });
        let start = self.at;
        for entry in &entries {
            let header = central_header(entry);
            self.put(&header)?;
        }
        let size = self.at - start;
        let count = entries.len() as u64;
        let zip64 = count >= 0xFFFF || start >= U32_MAX || size >= U32_MAX;
        if zip64 {
            let record = self.at;
            let mut end = Vec::with_capacity(76);
            end.extend_from_slice(&ZIP64_END.to_le_bytes());
            end.extend_from_slice(&44u64.to_le_bytes());
            end.extend_from_slice(&45u16.to_le_bytes());
            end.extend_from_slice(&45u16.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&size.to_le_bytes());
            end.extend_from_slice(&start.to_le_bytes());
            end.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&record.to_le_bytes());
            end.extend_from_slice(&1u32.to_le_bytes());
            self.put(&end)?;
        }
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&END.to_le_bytes());
        end.extend_from_slice(&[0; 4]);
        let short_count = count.min(0xFFFF) as u16;
        end.extend_from_slice(&short_count.to_le_bytes());
        end.extend_from_slice(&short_count.to_le_bytes());
        end.extend_from_slice(&(size.min(U32_MAX) as u32).to_le_bytes());
        end.extend_from_slice(&(start.min(U32_MAX) as u32).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.put(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// An entry's local header (sizes fit 32 bits: checked before it is written for good).
fn local_header(e: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + e.name.len());
    h.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
    h.extend_from_slice(&20u16.to_le_bytes());
    shared_fields(&mut h, e);
    h.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    h.extend_from_slice(e.name.as_bytes());
    h
}

/// The fields a local and a central header share, in their order: flags, method, time,
/// date, CRC-32, sizes and the name's length.
fn shared_fields(h: &mut Vec<u8>, e: &Entry) {
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&METHOD.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&e.crc32.to_le_bytes());
    h.extend_from_slice(&(e.compressed as u32).to_le_bytes());
    h.extend_from_slice(&(e.uncompressed as u32).to_le_bytes());
    h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
}

/// An entry's central directory header: its offset in a ZIP64 field when over 32 bits.
fn central_header(e: &Entry) -> Vec<u8> {
    let zip64 = e.offset >= U32_MAX;
    let version: u16 = if zip64 { 45 } else { 20 };
    let mut h = Vec::with_capacity(46 + e.name.len() + 12);
    h.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    shared_fields(&mut h, e);
    h.extend_from_slice(&(if zip64 { 12u16 } else { 0 }).to_le_bytes());
    h.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
    h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    h.extend_from_slice(&(e.offset.min(U32_MAX) as u32).to_le_bytes());
    h.extend_from_slice(e.name.as_bytes());
    if zip64 {
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&8u16.to_le_bytes());
        h.extend_from_slice(&e.offset.to_le_bytes());
    }
    h
}

/// `data` as one complete raw deflate stream.
pub fn deflate_whole(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    deflate_into(&mut c, data, &mut out, FlushCompress::Finish)?;
    Ok(out)
}

/// Compresses `input` with `c` into `out` (grown as needed); with a flush, until the flush
/// is complete.
pub fn deflate_into(
    c: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> io::Result<()> {
    loop {
        out.reserve(input.len() / 4 + 4096);
        let before = c.total_in();
        let status = c
            .compress_vec(input, out, flush)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        input = &input[(c.total_in() - before) as usize..];
        let room_left = out.len() < out.capacity();
        match (status, flush) {
            (Status::StreamEnd, _) => return Ok(()),
            (_, FlushCompress::None) if input.is_empty() => return Ok(()),
            (_, FlushCompress::Sync | FlushCompress::Full) if input.is_empty() && room_left => {
                return Ok(());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    #[test]
    fn an_archive_of_pieces_and_whole_entries_reads_back_with_the_zip_crate() {
        // A deflate stream of two independently started, fully flushed pieces and a final one.
        let (a, b) = (b"hello ".repeat(1000), b"world ".repeat(500));
        let mut stream = Vec::new();
        for piece in [&a, &b] {
            let mut c = Compress::new(Compression::fast(), false);
            deflate_into(&mut c, piece, &mut stream, FlushCompress::Full).unwrap();
        }
        let mut c = Compress::new(Compression::fast(), false);
        deflate_into(&mut c, b"!", &mut stream, FlushCompress::Finish).unwrap();
        let mut crc = crc32fast::Hasher::new_with_initial_len(crc32fast::hash(&a), a.len() as u64);
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            crc32fast::hash(&b),
            b.len() as u64,
        ));
        crc.update(b"!");
        let whole = [a.as_slice(), b.as_slice(), b"!"].concat();

        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_entry("sheet.xml").unwrap();
        let (first, rest) = stream.split_at(stream.len() / 3);
        zip.write_data(first).unwrap();
        zip.write_data(rest).unwrap();
        zip.end_entry(crc.finalize(), whole.len() as u64).unwrap();
        zip.add("small.xml", b"<a/>").unwrap();
        let bytes = zip.finish(&["small.xml"]).unwrap().into_inner();

        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.file_names().collect::<Vec<_>>().len(), 2);
        assert_eq!(
            archive.by_index(0).unwrap().name().unwrap(),
            "small.xml",
            "listed first"
        );
        let mut read = Vec::new();
        archive
            .by_name("sheet.xml")
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(
            read, whole,
            "the CRC-32 checked by the reader, the bytes equal"
        );
        let mut small = String::new();
        archive
            .by_name("small.xml")
            .unwrap()
            .read_to_string(&mut small)
            .unwrap();
        assert_eq!(small, "<a/>");
    }

    #[test]
    fn a_wrong_crc_is_caught_by_a_reader() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let data = deflate_whole(b"abc").unwrap();
        zip.start_entry("x").unwrap();
        zip.write_data(&data).unwrap();
        zip.end_entry(crc32fast::hash(b"abd"), 3).unwrap();
        let bytes = zip.finish(&[]).unwrap().into_inner();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut read = Vec::new();
        assert!(
            archive
                .by_name("x")
                .unwrap()
                .read_to_end(&mut read)
                .is_err()
        );
    }

    #[test]
    fn misuse_is_an_error_not_a_broken_archive() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        assert!(zip.write_data(b"x").is_err());
        assert!(zip.end_entry(0, 0).is_err());
        zip.start_entry("a").unwrap();
        assert!(zip.start_entry("b").is_err());
        assert!(zip.end_entry(0, U32_MAX + 1).is_err());
    }
}
