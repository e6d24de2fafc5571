//! Where staging parts and the final report live: a small trait with one implementation
//! per backend (a local directory, which is what a PVC is inside a pod; object stores).
//!
//! Keys are relative, `/`-separated paths such as `orders/2024.csv.parts/<run>/part-00003.csv`.
//! Every write is atomic: a reader sees the whole object or none of it.

pub mod beneath;
pub mod local;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

pub use local::LocalDir;

/// One piece of a composed object: the whole content of a stored object, checked against
/// its sha256 when one is given.
#[derive(Clone, Debug)]
pub struct Piece {
    /// The object's key.
    pub key: String,
    /// The sha256 (hex) its content must have.
    pub sha256: Option<String>,
    /// The CRC-32 its content must have: checked instead of the sha256 when known.
    pub crc32: Option<u32>,
}

impl Piece {
    /// What checks the piece's content as it is read.
    pub fn check(&self) -> PieceCheck<'_> {
        let hash = match (self.crc32, &self.sha256) {
            (Some(_), _) => PieceHash::Crc32(crc32fast::Hasher::new()),
            (None, Some(_)) => PieceHash::Sha256(Box::new(<sha2::Sha256 as sha2::Digest>::new())),
            (None, None) => PieceHash::Nothing,
        };
        PieceCheck { piece: self, hash }
    }
}

/// A piece's content being checked as it is read.
pub struct PieceCheck<'a> {
    piece: &'a Piece,
    hash: PieceHash,
}

enum PieceHash {
    Nothing,
    Crc32(crc32fast::Hasher),
    Sha256(Box<sha2::Sha256>),
}

impl PieceCheck<'_> {
    /// Takes the next bytes of the content.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match &mut self.hash {
            PieceHash::Nothing => {}
            PieceHash::Crc32(h) => h.update(bytes),
            PieceHash::Sha256(h) => h.update(bytes),
        }
    }

    /// Checks the content read against what the piece must hold.
    pub fn verify(self) -> Result<()> {
        use sha2::Digest;
        let damaged = |found: String, expected: String| crate::error::Error::Damaged {
            key: self.piece.key.clone(),
            found,
            expected,
        };
        match (self.hash, self.piece.crc32, &self.piece.sha256) {
            (PieceHash::Crc32(h), Some(expected), _) => {
                let found = h.finalize();
                if found != expected {
                    return Err(damaged(
                        format!("crc32 {found:08x}"),
                        format!("crc32 {expected:08x}"),
                    ));
                }
                Ok(())
            }
            (PieceHash::Sha256(h), _, Some(expected)) => {
                let found = hex::encode(h.finalize());
                if &found != expected {
                    return Err(damaged(found, expected.clone()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The content of an object, piece by piece.
pub type PieceStream = futures::stream::BoxStream<'static, Result<Bytes>>;

/// How hard a write tries to survive a crash of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced before it is published: plans, manifests, reports.
    Durable,
    /// Staging parts: published without a sync, since each part's CRC-32 is in its
    /// manifest and is checked before the part is used (on resume and at assembly).
    Checked,
}

/// The result of [`Composer::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    /// Size of the composed object.
    pub bytes: u64,
    /// sha256 of its bytes, hex.
    pub sha256: String,
    /// Pieces the store copied server-side instead of receiving their bytes.
    pub server_side_copies: u64,
}

/// A streaming writer of one object; nothing is visible until [`ObjectWriter::finish`].
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, buf: &[u8]) -> Result<()>;
    /// Publishes the object atomically and returns its size.
    async fn finish(self: Box<Self>) -> Result<u64>;
    /// Discards everything written; the object is left as it was.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// A place that holds staging data and reports.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Where `key` is, for people: a path or a URL.
    fn location(&self, key: &str) -> String;
    /// Reads a small object whole; `None` when it does not exist.
    async fn read(&self, key: &str) -> Result<Option<Bytes>>;
    /// Writes a small object whole, atomically, replacing any previous one.
    async fn write(&self, key: &str, data: Bytes) -> Result<()>;
    /// Like [`Storage::write`], for a key outside the run's staging data: a backend that
    /// writes through a temporary file keeps it under `scratch` (a prefix in the run's
    /// staging data), so a crash leaves nothing that cleanup does not remove.
    async fn write_via(&self, key: &str, data: Bytes, scratch: &str) -> Result<()> {
        let _ = scratch;
        self.write(key, data).await
    }
    /// Opens a streaming writer for `key`; the object replaces any previous one at finish.
    async fn create(&self, key: &str, durability: Durability) -> Result<Box<dyn ObjectWriter>>;
    /// An object's content as a stream of pieces (memory stays bounded whatever its
    /// size), or `None` when it does not exist.
    async fn read_pieces(&self, key: &str) -> Result<Option<PieceStream>>;
    /// Like [`Storage::create`], for a key outside the run's staging data (a report): a
    /// backend that writes through a temporary file keeps it under `scratch`, as
    /// [`Storage::write_via`] does.
    async fn create_via(
        &self,
        key: &str,
        scratch: &str,
        durability: Durability,
    ) -> Result<Box<dyn ObjectWriter>> {
        let _ = scratch;
        self.create(key, durability).await
    }
    /// Reads the bytes `start..start + len` of `key`, which must lie within the object
    /// (the caller knows its size), so that a large object is read piece by piece with
    /// bounded memory.
    async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes>;
    /// sha256 (hex) of an object's content, or `None` when it does not exist.
    async fn sha256(&self, key: &str) -> Result<Option<String>>;
    /// Size of an object, or `None` when it does not exist.
    async fn size(&self, key: &str) -> Result<Option<u64>>;
    /// Deletes one object (no error when it does not exist).
    async fn delete(&self, key: &str) -> Result<()>;
    /// Deletes every object under `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;
    /// A signed link that lets anyone download `key` for `expires_in`, where the backend
    /// can make one (buckets); `None` otherwise.
    async fn download_link(
        &self,
        _key: &str,
        _expires_in: std::time::Duration,
    ) -> Result<Option<String>> {
        Ok(None)
    }
    /// Starts composing `target` from pieces appended in order; nothing is visible until
    /// [`Composer::finish`] publishes it atomically. A backend may copy server-side.
    /// `scratch` is a prefix in the run's staging data that belongs to this composition: a
    /// backend that needs a temporary file keeps it there (removing what a crashed earlier
    /// composition left), so cleanup and the next run remove what a crash leaves.
    async fn compose(&self, target: &str, scratch: &str) -> Result<Box<dyn Composer>>;
}

/// Builds one object from pieces appended in order (a local temporary file, or a
/// multipart upload whose parts may be server-side copies).
#[async_trait]
pub trait Composer: Send {
    /// Appends a piece.
    async fn append(&mut self, piece: Piece) -> Result<()>;
    /// Publishes the object atomically; returns its size and sha256.
    async fn finish(self: Box<Self>) -> Result<Composed>;
    /// Discards everything; the target is left as it was.
    async fn abort(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(piece: &Piece, content: &[&[u8]]) -> Result<()> {
        let mut check = piece.check();
        for bytes in content {
            check.update(bytes);
        }
        check.verify()
    }

    #[test]
    fn a_piece_is_checked_by_its_crc32_when_known_else_by_its_sha256() {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(b"hello world"));
        let crc = crc32fast::hash(b"hello world");
        let piece = |sha256: Option<String>, crc32: Option<u32>| Piece {
            key: "p".into(),
            sha256,
            crc32,
        };
        let content: &[&[u8]] = &[b"hello ", b"world"];
        let damaged: &[&[u8]] = &[b"hello ", b"World"];
        // The CRC-32 decides when known, even against a wrong sha256.
        assert!(checked(&piece(Some("00".into()), Some(crc)), content).is_ok());
        let err = checked(&piece(Some(sha.clone()), Some(crc)), damaged).unwrap_err();
        assert!(
            matches!(&err, crate::error::Error::Damaged { expected, .. } if *expected == format!("crc32 {crc:08x}")),
            "{err}"
        );
        // A part of an earlier version: its sha256.
        assert!(checked(&piece(Some(sha.clone()), None), content).is_ok());
        assert!(checked(&piece(Some(sha), None), damaged).is_err());
        assert!(
            checked(&piece(None, None), damaged).is_ok(),
            "nothing to check"
        );
    }
}
