//! Storage in a local directory (or a mounted volume). Every path is opened beneath the
//! root without following symbolic links (see [`super::beneath`]). Writes go to a temporary
//! file (beside the key, or in the run's scratch directory for the report and its
//! manifest), are flushed and fsynced, then renamed into place.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::beneath::{OpenDir, Root};
use super::{Composed, Composer, Durability, ObjectWriter, Piece, PieceStream, Storage};
use crate::error::{Error, Result};

/// Buffer size for file reads and copies.
const IO_BUFFER: usize = 1 << 20;

/// Buffer of a writer: what callers write in smaller pieces is gathered to this size;
/// bigger writes (a chunk export's batches) go straight to the file, so the buffer's pages
/// are never touched and a worker does not hold a second copy of its batch.
const WRITER_BUFFER: usize = 64 * 1024;

/// A directory that holds keys as files.
#[derive(Clone, Debug)]
pub struct LocalDir {
    root: Arc<Root>,
}

impl LocalDir {
    /// Storage rooted at `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir {
            root: Arc::new(Root::new(root)),
        }
    }

    /// Runs a blocking file operation beneath the root on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        what: String,
        op: impl FnOnce(&Root) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || op(&root).map_err(|e| Error::storage(what, e)))
            .await
            .map_err(|e| Error::storage("file operation", std::io::Error::other(e)))?
    }

    /// Opens a temporary file in `dir_key` for `key` and wraps it in a writer.
    async fn temp_writer(
        &self,
        key: &str,
        dir_key: String,
        durability: Durability,
    ) -> Result<LocalWriter> {
        let name = file_name(key);
        let (dir, temp, file) = self
            .blocking(
                format!("creating a file for {}", self.location(key)),
                move |root| root.create_temp(&dir_key, &name),
            )
            .await?;
        Ok(LocalWriter {
            root: self.root.clone(),
            key: key.to_string(),
            dir: Arc::new(dir),
            temp,
            file: Some(tokio::io::BufWriter::with_capacity(
                WRITER_BUFFER,
                tokio::fs::File::from_std(file),
            )),
            written: 0,
            durability,
        })
    }
}

/// The last component of `key`, as the start of its temporary file's name.
fn file_name(key: &str) -> String {
    let name = key
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    format!(".{name}")
}

/// The directory part of `key` (empty at the root).
fn dir_of(key: &str) -> String {
    key.rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default()
}

struct LocalWriter {
    root: Arc<Root>,
    key: String,
    dir: Arc<OpenDir>,
    temp: String,
    /// `None` once published.
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    written: u64,
    durability: Durability,
}

impl Drop for LocalWriter {
    /// A writer dropped before `finish` (a cancelled export) leaves no temporary file.
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = self.dir.unlink(&self.temp);
        }
    }
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        let location = self.root.display(&self.key);
        let file = self.file.as_mut().ok_or_else(|| {
            Error::storage(
                format!("writing {location}"),
                std::io::Error::other("finished"),
            )
        })?;
        file.write_all(buf)
            .await
            .map_err(|e| Error::storage(format!("writing {location}"), e))?;
        self.written += buf.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        let location = self.root.display(&self.key);
        let ctx = |what: &str| format!("{what} {location}");
        let Some(mut file) = self.file.take() else {
            return Err(Error::storage(
                ctx("publishing"),
                std::io::Error::other("finished"),
            ));
        };
        let published = async {
            file.flush()
                .await
                .map_err(|e| Error::storage(ctx("flushing"), e))?;
            if self.durability == Durability::Durable {
                file.get_ref()
                    .sync_all()
                    .await
                    .map_err(|e| Error::storage(ctx("syncing"), e))?;
            }
            drop(file);
            let (root, dir, temp, key) = (
                self.root.clone(),
                self.dir.clone(),
                self.temp.clone(),
                self.key.clone(),
            );
            let durable = self.durability == Durability::Durable;
            tokio::task::spawn_blocking(move || {
                let target = root.rename_into(&dir, &temp, &key)?;
                if durable {
                    target.sync();
                }
                Ok::<_, std::io::Error>(())
            })
            .await
            .map_err(|e| Error::storage(ctx("publishing"), std::io::Error::other(e)))?
            .map_err(|e| Error::storage(ctx("publishing"), e))
        }
        .await;
        if published.is_err() {
            let _ = self.dir.unlink(&self.temp);
        }
        published.map(|()| self.written)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Drop removes the temporary file.
        Ok(())
    }
}

#[async_trait]
impl Storage for LocalDir {
    fn location(&self, key: &str) -> String {
        self.root.display(key)
    }

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        let k = key.to_string();
        self.blocking(format!("reading {}", self.location(key)), move |root| {
            let Some(mut file) = root.open_file(&k)? else {
                return Ok(None);
            };
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            Ok(Some(Bytes::from(data)))
        })
        .await
    }

    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        let mut writer = self.create(key, Durability::Durable).await?;
        writer.write(&data).await?;
        writer.finish().await.map(|_| ())
    }

    async fn write_via(&self, key: &str, data: Bytes, scratch: &str) -> Result<()> {
        let scratch = scratch.trim_end_matches('/').to_string();
        let mut writer = Box::new(self.temp_writer(key, scratch, Durability::Durable).await?);
        writer.write(&data).await?;
        writer.finish().await.map(|_| ())
    }

    async fn create(&self, key: &str, durability: Durability) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(
            self.temp_writer(key, dir_of(key), durability).await?,
        ))
    }

    async fn read_pieces(&self, key: &str) -> Result<Option<PieceStream>> {
        use futures::StreamExt;
        use tokio::io::AsyncReadExt;
        let k = key.to_string();
        let location = self.location(key);
        let what = format!("reading {location}");
        let Some(file) = self
            .blocking(what.clone(), move |root| root.open_file(&k))
            .await?
        else {
            return Ok(None);
        };
        let file = tokio::fs::File::from_std(file);
        let pieces = futures::stream::try_unfold((file, what), |(mut file, what)| async move {
            let mut buf = vec![0u8; IO_BUFFER];
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| Error::storage(what.clone(), e))?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), (file, what))))
        });
        Ok(Some(pieces.boxed()))
    }

    async fn create_via(
        &self,
        key: &str,
        scratch: &str,
        durability: Durability,
    ) -> Result<Box<dyn ObjectWriter>> {
        let scratch = scratch.trim_end_matches('/').to_string();
        Ok(Box::new(self.temp_writer(key, scratch, durability).await?))
    }

    async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes> {
        let k = key.to_string();
        self.blocking(format!("reading {}", self.location(key)), move |root| {
            use std::io::{Seek, SeekFrom};
            let Some(mut file) = root.open_file(&k)? else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the file does not exist",
                ));
            };
            file.seek(SeekFrom::Start(start))?;
            let mut data = Vec::new();
            file.take(len).read_to_end(&mut data)?;
            Ok(Bytes::from(data))
        })
        .await
    }

    async fn sha256(&self, key: &str) -> Result<Option<String>> {
        let k = key.to_string();
        self.blocking(format!("reading {}", self.location(key)), move |root| {
            let Some(mut file) = root.open_file(&k)? else {
                return Ok(None);
            };
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; IO_BUFFER];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(Some(hex::encode(hasher.finalize())));
                }
                hasher.update(&buf[..n]);
            }
        })
        .await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let k = key.to_string();
        self.blocking(format!("reading {}", self.location(key)), move |root| {
            Ok(match root.open_file(&k)? {
                Some(file) => Some(file.metadata()?.len()),
                None => None,
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let k = key.to_string();
        self.blocking(format!("deleting {}", self.location(key)), move |root| {
            root.remove_file(&k)
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let dir = prefix.trim_end_matches('/').to_string();
        self.blocking(format!("deleting {}", self.location(&dir)), move |root| {
            root.remove_tree(&dir)?;
            // Remove the now-empty `<output>.parts/` directory too, when nothing else is in it.
            let parent = dir_of(&dir);
            if !parent.is_empty() {
                root.remove_dir_if_empty(&parent);
            }
            Ok(())
        })
        .await
    }

    async fn compose(&self, target: &str, scratch: &str) -> Result<Box<dyn Composer>> {
        // The scratch directory belongs to this composition: whatever is in it was left
        // by a crashed earlier one.
        let scratch = scratch.trim_end_matches('/').to_string();
        let name = file_name(target);
        let (dir, temp, file) = self
            .blocking(
                format!("creating a file for {}", self.location(target)),
                move |root| {
                    root.remove_tree(&scratch)?;
                    root.create_temp(&scratch, &name)
                },
            )
            .await?;
        Ok(Box::new(LocalComposer {
            root: self.root.clone(),
            target: target.to_string(),
            dir: Arc::new(dir),
            temp: temp.clone(),
            state: Some(ComposeState {
                out: std::io::BufWriter::with_capacity(IO_BUFFER, file),
                hasher: Sha256::new(),
                total: 0,
            }),
        }))
    }
}

/// The file being composed, its hash and size so far.
struct ComposeState {
    out: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    total: u64,
}

impl ComposeState {
    fn append(&mut self, piece: &Piece, root: &Root) -> Result<()> {
        let location = root.display(&piece.key);
        let ctx = |what: &str| format!("{what} {location}");
        let mut input = root
            .open_file(&piece.key)
            .map_err(|e| Error::storage(ctx("opening"), e))?
            .ok_or_else(|| {
                Error::storage(
                    ctx("opening"),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?;
        let mut check = piece.check();
        let start = self.total;
        let mut buf = vec![0u8; IO_BUFFER];
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::storage(ctx("reading"), e))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            check.update(&buf[..n]);
            self.out
                .write_all(&buf[..n])
                .map_err(|e| Error::storage("writing the report", e))?;
            self.total += n as u64;
        }
        check.verify()?;
        // The part's bytes start for the disk now, while later chunks still export, so the
        // fsync of the publish waits only for the last of them, not the whole report.
        self.out
            .flush()
            .map_err(|e| Error::storage("writing the report", e))?;
        start_writeback(self.out.get_ref(), start, self.total - start);
        Ok(())
    }

    fn publish(self, root: &Root, dir: &OpenDir, temp: &str, target: &str) -> Result<Composed> {
        let ctx = |what: &str| format!("{what} {}", root.display(target));
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::storage(ctx("flushing"), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::storage(ctx("syncing"), e))?;
        drop(file);
        root.rename_into(dir, temp, target)
            .map_err(|e| Error::storage(ctx("publishing"), e))?
            .sync();
        Ok(Composed {
            bytes: self.total,
            sha256: hex::encode(self.hasher.finalize()),
            server_side_copies: 0,
        })
    }
}

/// Starts writing `len` bytes of `file` from `offset` back to the disk without waiting for
/// them (Linux's `sync_file_range(SYNC_FILE_RANGE_WRITE)`: no journal commit, so it does not
/// wait on other files' data either). Best effort: the fsync of the publish reports errors.
#[allow(unsafe_code)]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the descriptor is borrowed from `file`, open for the whole call, and the
        // call reads and writes none of this process's memory.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Composes into a temporary file in the run's scratch directory; appends run on blocking
/// threads.
struct LocalComposer {
    root: Arc<Root>,
    target: String,
    dir: Arc<OpenDir>,
    temp: String,
    /// `None` while an append runs on a blocking thread, or after finish/abort.
    state: Option<ComposeState>,
}

impl Drop for LocalComposer {
    /// A composer dropped before `finish` leaves no temporary file.
    fn drop(&mut self) {
        if self.state.take().is_some() {
            let _ = self.dir.unlink(&self.temp);
        }
    }
}

fn composer_gone() -> Error {
    Error::storage(
        "assembling",
        std::io::Error::other("an earlier append failed"),
    )
}

#[async_trait]
impl Composer for LocalComposer {
    async fn append(&mut self, piece: Piece) -> Result<()> {
        let mut state = self.state.take().ok_or_else(composer_gone)?;
        let root = self.root.clone();
        let (state, result) = tokio::task::spawn_blocking(move || {
            let result = state.append(&piece, &root);
            (state, result)
        })
        .await
        .map_err(|e| Error::storage("assembling", std::io::Error::other(e)))?;
        match result {
            Ok(()) => {
                self.state = Some(state);
                Ok(())
            }
            Err(e) => {
                let _ = self.dir.unlink(&self.temp);
                Err(e)
            }
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<Composed> {
        let state = self.state.take().ok_or_else(composer_gone)?;
        let (root, dir, temp, target) = (
            self.root.clone(),
            self.dir.clone(),
            self.temp.clone(),
            self.target.clone(),
        );
        let result =
            tokio::task::spawn_blocking(move || state.publish(&root, &dir, &temp, &target))
                .await
                .map_err(|e| Error::storage("assembling", std::io::Error::other(e)))?;
        if result.is_err() {
            let _ = self.dir.unlink(&self.temp);
        }
        result
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Drop removes the temporary file.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writer_publishes_only_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path());
        let mut w = store.create("a/b.csv", Durability::Durable).await.unwrap();
        w.write(b"hello").await.unwrap();
        assert_eq!(store.size("a/b.csv").await.unwrap(), None);
        assert_eq!(w.finish().await.unwrap(), 5);
        assert_eq!(
            store.read("a/b.csv").await.unwrap().unwrap(),
            Bytes::from("hello")
        );
        let mut w = store.create("a/b.csv", Durability::Durable).await.unwrap();
        w.write(b"other").await.unwrap();
        w.abort().await.unwrap();
        assert_eq!(
            store.read("a/b.csv").await.unwrap().unwrap(),
            Bytes::from("hello")
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("a")).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[tokio::test]
    async fn compose_refuses_a_damaged_piece_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path());
        store.write("p.parts/0", Bytes::from("data")).await.unwrap();
        let mut composer = store.compose("p", "p.parts/r/tmp/").await.unwrap();
        let err = composer
            .append(Piece {
                key: "p.parts/0".into(),
                sha256: Some("00".into()),
                crc32: None,
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("p.parts/0 is damaged"), "{err}");
        drop(composer);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p.parts"], "no report and no temporary file");
    }

    #[tokio::test]
    async fn compose_concatenates_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path());
        store
            .write("p/x.parts/r/part-1", Bytes::from("12\n"))
            .await
            .unwrap();
        store
            .write("p/x.parts/r/part-0", Bytes::from("34\n"))
            .await
            .unwrap();
        let mut composer = store.compose("p/x", "p/x.parts/r/tmp/").await.unwrap();
        composer
            .append(Piece {
                key: "p/x.parts/r/part-0".into(),
                sha256: Some(hex::encode(Sha256::digest(b"34\n"))),
                crc32: None,
            })
            .await
            .unwrap();
        assert!(
            !dir.path().join("p/x").exists(),
            "nothing visible before finish"
        );
        composer
            .append(Piece {
                key: "p/x.parts/r/part-1".into(),
                sha256: None,
                crc32: None,
            })
            .await
            .unwrap();
        let composed = composer.finish().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("p/x")).unwrap(),
            "34\n12\n"
        );
        assert_eq!(composed.bytes, 6);
        assert_eq!(composed.sha256, hex::encode(Sha256::digest(b"34\n12\n")));
        store.delete_prefix("p/x.parts/r/").await.unwrap();
        assert!(!dir.path().join("p/x.parts").exists());
    }

    #[tokio::test]
    async fn a_piece_of_many_buffers_is_checked_whole_and_a_change_in_its_last_one_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path());
        // Three and a half buffers, each byte depending on its place.
        let data: Vec<u8> = (0..IO_BUFFER * 7 / 2).map(|i| (i % 251) as u8).collect();
        let expected = hex::encode(Sha256::digest(&data));
        store
            .write("q.parts/0", Bytes::from(data.clone()))
            .await
            .unwrap();
        let mut composer = store.compose("q", "q.parts/r/tmp/").await.unwrap();
        composer
            .append(Piece {
                key: "q.parts/0".into(),
                sha256: Some(expected.clone()),
                crc32: None,
            })
            .await
            .unwrap();
        let composed = composer.finish().await.unwrap();
        assert_eq!(composed.sha256, expected);
        assert_eq!(std::fs::read(dir.path().join("q")).unwrap(), data);
        let mut damaged = data;
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        store
            .write("q.parts/1", Bytes::from(damaged))
            .await
            .unwrap();
        let mut composer = store.compose("q2", "q.parts/r/tmp/").await.unwrap();
        let err = composer
            .append(Piece {
                key: "q.parts/1".into(),
                sha256: Some(expected),
                crc32: None,
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("q.parts/1 is damaged"), "{err}");
    }

    #[tokio::test]
    async fn temporaries_live_in_scratch_and_a_crash_leftover_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path());
        store
            .write("r.parts/x/part", Bytes::from("ab\n"))
            .await
            .unwrap();
        // What a crashed assembly left.
        std::fs::create_dir_all(dir.path().join("r.parts/x/tmp")).unwrap();
        std::fs::write(dir.path().join("r.parts/x/tmp/.r.tmp-0"), "old").unwrap();
        let mut composer = store.compose("r", "r.parts/x/tmp/").await.unwrap();
        let in_scratch: Vec<_> = std::fs::read_dir(dir.path().join("r.parts/x/tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(in_scratch.len(), 1, "{in_scratch:?}");
        assert!(in_scratch[0].starts_with(".r.tmp-") && in_scratch[0] != ".r.tmp-0");
        composer
            .append(Piece {
                key: "r.parts/x/part".into(),
                sha256: None,
                crc32: None,
            })
            .await
            .unwrap();
        composer.finish().await.unwrap();
        store
            .write_via("r.manifest.json", Bytes::from("{}"), "r.parts/x/tmp/")
            .await
            .unwrap();
        let mut top: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["r", "r.manifest.json", "r.parts"]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("r.parts/x/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("r")).unwrap(),
            "ab\n"
        );
    }
}
