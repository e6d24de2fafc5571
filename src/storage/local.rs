//! Storage in a local directory (or a mounted volume): writes go to a temporary file in
//! the same directory, are flushed and fsynced, then renamed into place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Composed, Composer, Durability, ObjectWriter, Piece, Storage};
use crate::error::{Error, Result};

/// Buffer size for file writes and copies.
const IO_BUFFER: usize = 1 << 20;

/// A directory that holds keys as files.
#[derive(Clone, Debug)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// Storage rooted at `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir { root: root.into() }
    }

    /// The file that holds `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = rand::random();
    path.with_file_name(format!(".{name}.tmp-{nonce:016x}"))
}

async fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::storage(format!("creating directory {}", parent.display()), e))?;
    }
    Ok(())
}

/// Makes a rename durable by syncing the directory that holds it.
fn sync_dir(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

struct LocalWriter {
    final_path: PathBuf,
    temp: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    written: u64,
    durability: Durability,
}

impl Drop for LocalWriter {
    /// A writer dropped before `finish` (a cancelled export) leaves no temporary file.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .write_all(buf)
            .await
            .map_err(|e| Error::storage(format!("writing {}", self.temp.display()), e))?;
        self.written += buf.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        let ctx = |what: &str| format!("{what} {}", self.final_path.display());
        self.file
            .flush()
            .await
            .map_err(|e| Error::storage(ctx("flushing"), e))?;
        if self.durability == Durability::Durable {
            self.file
                .get_ref()
                .sync_all()
                .await
                .map_err(|e| Error::storage(ctx("syncing"), e))?;
        }
        tokio::fs::rename(&self.temp, &self.final_path)
            .await
            .map_err(|e| Error::storage(ctx("publishing"), e))?;
        if self.durability == Durability::Durable {
            sync_dir(&self.final_path);
        }
        Ok(self.written)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Drop removes the temporary file.
        Ok(())
    }
}

#[async_trait]
impl Storage for LocalDir {
    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::storage(format!("reading {}", path.display()), e)),
        }
    }

    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        let mut writer = self.create(key, Durability::Durable).await?;
        writer.write(&data).await?;
        writer.finish().await.map(|_| ())
    }

    async fn create(&self, key: &str, durability: Durability) -> Result<Box<dyn ObjectWriter>> {
        let final_path = self.path(key);
        ensure_parent(&final_path).await?;
        let temp = temp_path(&final_path);
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| Error::storage(format!("creating {}", temp.display()), e))?;
        Ok(Box::new(LocalWriter {
            final_path,
            temp,
            file: tokio::io::BufWriter::with_capacity(IO_BUFFER, file),
            written: 0,
            durability,
        }))
    }

    async fn sha256(&self, key: &str) -> Result<Option<String>> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::storage(format!("opening {}", path.display()), e)),
            };
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; IO_BUFFER];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| Error::storage(format!("reading {}", path.display()), e))?;
                if n == 0 {
                    return Ok(Some(hex::encode(hasher.finalize())));
                }
                hasher.update(&buf[..n]);
            }
        })
        .await
        .map_err(|e| Error::storage("hashing", std::io::Error::other(e)))?
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::storage(format!("reading {}", path.display()), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage(format!("deleting {}", path.display()), e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let path = self.path(prefix.trim_end_matches('/'));
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::storage(format!("deleting {}", path.display()), e)),
        }
        // Remove the now-empty `<output>.parts/` directory too, when nothing else is in it.
        if let Some(parent) = path.parent()
            && parent.starts_with(&self.root)
            && parent != self.root
        {
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }

    async fn compose(&self, target: &str) -> Result<Box<dyn Composer>> {
        let final_path = self.path(target);
        ensure_parent(&final_path).await?;
        let temp = temp_path(&final_path);
        let file = std::fs::File::create(&temp)
            .map_err(|e| Error::storage(format!("creating {}", temp.display()), e))?;
        Ok(Box::new(LocalComposer {
            root: self.root.clone(),
            final_path,
            state: Some(ComposeState {
                temp,
                out: std::io::BufWriter::with_capacity(IO_BUFFER, file),
                hasher: Sha256::new(),
                total: 0,
            }),
        }))
    }
}

/// The file being composed, its hash and size so far.
struct ComposeState {
    temp: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    total: u64,
}

impl ComposeState {
    fn append(&mut self, piece: &Piece, root: &Path) -> Result<()> {
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let path = root.join(&piece.key);
        let mut input =
            std::fs::File::open(&path).map_err(|e| Error::storage(ctx("opening", &path), e))?;
        let mut piece_hasher = Sha256::new();
        let mut buf = vec![0u8; IO_BUFFER];
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::storage(ctx("reading", &path), e))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            piece_hasher.update(&buf[..n]);
            self.out
                .write_all(&buf[..n])
                .map_err(|e| Error::storage(ctx("writing", &self.temp), e))?;
            self.total += n as u64;
        }
        piece.verify(&hex::encode(piece_hasher.finalize()))
    }

    fn publish(self, final_path: &Path) -> Result<Composed> {
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let temp = self.temp.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::storage(ctx("flushing", &temp), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::storage(ctx("syncing", &temp), e))?;
        std::fs::rename(&temp, final_path)
            .map_err(|e| Error::storage(ctx("publishing", final_path), e))?;
        sync_dir(final_path);
        Ok(Composed {
            bytes: self.total,
            sha256: hex::encode(self.hasher.finalize()),
            server_side_copies: 0,
        })
    }
}

/// Composes into a temporary file next to the target; appends run on blocking threads.
struct LocalComposer {
    root: PathBuf,
    final_path: PathBuf,
    /// `None` while an append runs on a blocking thread, or after finish/abort.
    state: Option<ComposeState>,
}

impl Drop for LocalComposer {
    /// A composer dropped before `finish` leaves no temporary file.
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let _ = std::fs::remove_file(&state.temp);
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
                let _ = std::fs::remove_file(&state.temp);
                Err(e)
            }
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<Composed> {
        let state = self.state.take().ok_or_else(composer_gone)?;
        let final_path = self.final_path.clone();
        let temp = state.temp.clone();
        let result = tokio::task::spawn_blocking(move || state.publish(&final_path))
            .await
            .map_err(|e| Error::storage("assembling", std::io::Error::other(e)))?;
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
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
        let mut composer = store.compose("p").await.unwrap();
        let err = composer
            .append(Piece {
                key: "p.parts/0".into(),
                sha256: Some("00".into()),
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
        let mut composer = store.compose("p/x").await.unwrap();
        composer
            .append(Piece {
                key: "p/x.parts/r/part-0".into(),
                sha256: Some(hex::encode(Sha256::digest(b"34\n"))),
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
}
