//! Files beneath a root directory, never through a symbolic link. Every key is opened one
//! component at a time from a descriptor of the root, with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (or `O_NOFOLLOW` where the kernel has no `openat2`), and created,
//! renamed and removed with the `*at` calls relative to the directory so opened. A symlink
//! planted anywhere in the volume is refused with an error naming it; nothing outside the
//! root is ever read, written or removed.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// A trusted root directory (the output directory or the volume's mount point).
#[derive(Clone, Debug)]
pub struct Root {
    path: PathBuf,
}

/// A directory opened beneath the root, and its key (for messages).
#[derive(Debug)]
pub struct OpenDir {
    fd: OwnedFd,
    key: String,
}

impl OpenDir {
    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Flushes the directory's entries (a rename in it) to disk.
    pub fn sync(&self) {
        let _ = rustix::fs::fsync(&self.fd);
    }

    /// Removes `name` from this directory; a missing entry is not an error.
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Splits a key into its components, refusing anything that could leave the root:
/// absolute keys, empty, `.` and `..` components, NUL bytes. A trailing `/` is allowed.
pub fn components(key: &str) -> io::Result<Vec<&str>> {
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{key:?} is not a relative path beneath the output directory"),
        )
    };
    if trimmed.is_empty() || trimmed.starts_with('/') || trimmed.contains('\0') {
        return Err(bad());
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(bad());
    }
    Ok(parts)
}

/// Splits a key into its directory components and its file name.
fn split(key: &str) -> io::Result<(Vec<&str>, &str)> {
    let mut parts = components(key)?;
    let name = parts.pop().unwrap_or_default();
    Ok((parts, name))
}

fn link_refused(root: &Path, key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "refusing {}: it is (or passes through) a symbolic link or a non-directory, \
             and reportjob never follows links inside the output directory",
            root.join(key).display()
        ),
    )
}

/// Opens `name` in `dir` without following a symbolic link or leaving `dir`.
fn step(dir: BorrowedFd<'_>, name: &str, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::ResolveFlags;
        match rustix::fs::openat2(
            dir,
            name,
            flags,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        ) {
            // Kernels before 5.6 (or sandboxes that filter the call): one component with
            // O_NOFOLLOW resolves exactly alike, since names are never `..` nor contain `/`.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {}
            other => return other,
        }
    }
    rustix::fs::openat(dir, name, flags, mode)
}

/// True when `name` in `dir` is a symbolic link.
fn is_link(dir: BorrowedFd<'_>, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink)
}

impl Root {
    /// The root at `path`; the root itself may be a link (it is configuration), nothing
    /// beneath it may.
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root { path: path.into() }
    }

    /// Where `key` is, for people.
    pub fn display(&self, key: &str) -> String {
        self.path.join(key).display().to_string()
    }

    fn open_root(&self, create: bool) -> io::Result<Option<OwnedFd>> {
        if create {
            std::fs::create_dir_all(&self.path)?;
        }
        match File::open(&self.path) {
            Ok(f) => Ok(Some(f.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Maps an error of opening `name` in `dir` (the key so far being `key`).
    fn open_error(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        key: &str,
        e: rustix::io::Errno,
    ) -> io::Error {
        match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV | rustix::io::Errno::NOTDIR => {
                link_refused(&self.path, key)
            }
            _ if is_link(dir, name) => link_refused(&self.path, key),
            e => e.into(),
        }
    }

    /// Opens the directory made of `parts` (created when `create`); `None` when it does
    /// not exist and `create` is false.
    fn open_parts(&self, parts: &[&str], create: bool) -> io::Result<Option<OpenDir>> {
        let Some(mut fd) = self.open_root(create)? else {
            return Ok(None);
        };
        let mut key = String::new();
        for part in parts {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(part);
            let flags = OFlags::DIRECTORY | OFlags::RDONLY;
            fd = match step(fd.as_fd(), part, flags, Mode::empty()) {
                Ok(next) => next,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, *part, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(self.open_error(fd.as_fd(), part, &key, e)),
                    }
                    step(fd.as_fd(), part, flags, Mode::empty())
                        .map_err(|e| self.open_error(fd.as_fd(), part, &key, e))?
                }
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(e) => return Err(self.open_error(fd.as_fd(), part, &key, e)),
            };
        }
        Ok(Some(OpenDir { fd, key }))
    }

    /// Opens the directory `key` (created with its parents when `create`).
    pub fn open_dir(&self, key: &str, create: bool) -> io::Result<Option<OpenDir>> {
        self.open_parts(&components(key)?, create)
    }

    /// Opens the directory that holds `key` (created when `create`) and returns it with
    /// the file name.
    pub fn parent_of<'k>(
        &self,
        key: &'k str,
        create: bool,
    ) -> io::Result<Option<(OpenDir, &'k str)>> {
        let (parts, name) = split(key)?;
        Ok(self.open_parts(&parts, create)?.map(|d| (d, name)))
    }

    /// Opens regular file `key` for reading; `None` when it does not exist.
    pub fn open_file(&self, key: &str) -> io::Result<Option<File>> {
        let Some((dir, name)) = self.parent_of(key, false)? else {
            return Ok(None);
        };
        // O_NONBLOCK: a FIFO planted in the volume must not hang the open.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK;
        let fd = match step(dir.fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.open_error(dir.fd(), name, key, e)),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.display(key)),
            ));
        }
        let file = File::from(fd);
        // Back to blocking reads.
        rustix::fs::fcntl_setfl(&file, OFlags::RDONLY)?;
        Ok(Some(file))
    }

    /// Creates a new, empty file with a unique name starting with `prefix` in directory
    /// `dir_key` (created when needed); returns the directory, the name and the file.
    pub fn create_temp(&self, dir_key: &str, prefix: &str) -> io::Result<(OpenDir, String, File)> {
        let dir = match dir_key.is_empty() {
            true => self.open_parts(&[], true)?,
            false => self.open_dir(dir_key, true)?,
        }
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let name = format!("{prefix}.tmp-{:016x}", rand::random::<u64>());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let fd = step(dir.fd(), &name, flags, Mode::from_raw_mode(0o666))
            .map_err(|e| self.open_error(dir.fd(), &name, &dir.key, e))?;
        Ok((dir, name, File::from(fd)))
    }

    /// Renames `name` in `from` to `key` (its directory created when needed), atomically
    /// replacing a file there; refuses when `key` is a symbolic link. Returns the target's
    /// directory, for syncing.
    pub fn rename_into(&self, from: &OpenDir, name: &str, key: &str) -> io::Result<OpenDir> {
        let (to, target) = self
            .parent_of(key, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if is_link(to.fd(), target) {
            return Err(link_refused(&self.path, key));
        }
        rustix::fs::renameat(from.fd(), name, to.fd(), target)?;
        Ok(to)
    }

    /// Removes file `key` (a symbolic link there is removed itself, never its target);
    /// a missing file is not an error.
    pub fn remove_file(&self, key: &str) -> io::Result<()> {
        match self.parent_of(key, false)? {
            Some((dir, name)) => dir.unlink(name),
            None => Ok(()),
        }
    }

    /// Removes directory `key` and everything in it, descending without following links;
    /// a missing directory is not an error, a link in its place is refused.
    pub fn remove_tree(&self, key: &str) -> io::Result<()> {
        let Some((parent, name)) = self.parent_of(key, false)? else {
            return Ok(());
        };
        let dir = match step(
            parent.fd(),
            name,
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.open_error(parent.fd(), name, key, e)),
        };
        empty_dir(dir.as_fd(), 0)?;
        match rustix::fs::unlinkat(parent.fd(), name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes directory `key` when it is empty; anything else is left alone.
    pub fn remove_dir_if_empty(&self, key: &str) {
        if let Ok(Some((parent, name))) = self.parent_of(key, false) {
            let _ = rustix::fs::unlinkat(parent.fd(), name, AtFlags::REMOVEDIR);
        }
    }
}

/// Deepest directory nesting `remove_tree` descends (staging is two levels deep).
const MAX_DEPTH: usize = 16;

/// Removes everything inside `dir`: files and links are unlinked, directories emptied
/// (opened without following links) and removed.
fn empty_dir(dir: BorrowedFd<'_>, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other("directory tree too deep to remove"));
    }
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push((name, entry.file_type()));
        }
    }
    for (name, kind) in names {
        let kind = match kind {
            FileType::Unknown => rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|s| FileType::from_raw_mode(s.st_mode))
                .unwrap_or(FileType::Unknown),
            k => k,
        };
        if kind == FileType::Directory {
            let sub = step(
                dir,
                &name,
                OFlags::DIRECTORY | OFlags::RDONLY,
                Mode::empty(),
            )?;
            empty_dir(sub.as_fd(), depth + 1)?;
            match rustix::fs::unlinkat(dir, name.as_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            match rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Root, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root_path).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "keep").unwrap();
        (dir, Root::new(&root_path), outside)
    }

    #[test]
    fn keys_that_could_leave_the_root_are_refused() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/./b",
            "a\0b",
        ] {
            assert!(components(key).is_err(), "{key:?}");
        }
        assert_eq!(components("a/b.csv").unwrap(), ["a", "b.csv"]);
        assert_eq!(components("a/b/").unwrap(), ["a", "b"]);
    }

    #[test]
    fn files_are_created_renamed_read_and_removed_beneath() {
        let (_dir, root, _) = setup();
        let (tmp, name, mut file) = root.create_temp("x.parts/r/tmp", "t").unwrap();
        file.write_all(b"data").unwrap();
        root.rename_into(&tmp, &name, "x").unwrap();
        let mut text = String::new();
        root.open_file("x")
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "data");
        assert!(root.open_file("missing").unwrap().is_none());
        assert!(root.open_file("nodir/missing").unwrap().is_none());
        root.remove_tree("x.parts/r").unwrap();
        root.remove_dir_if_empty("x.parts");
        assert!(root.open_dir("x.parts", false).unwrap().is_none());
        root.remove_file("x").unwrap();
        root.remove_file("x").unwrap();
        assert!(root.open_file("x").unwrap().is_none());
    }

    #[test]
    fn links_anywhere_beneath_are_refused() {
        let (_dir, root, outside) = setup();
        let base = root.path.clone();
        // A directory link on the way, a file link at the end, a link as the tree to remove.
        symlink(&outside, base.join("x.parts")).unwrap();
        let err = root.create_temp("x.parts/r/tmp", "t").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(root.open_file("x.parts/secret").is_err());
        assert!(root.remove_tree("x.parts").is_err());
        symlink(outside.join("secret"), base.join("report.csv")).unwrap();
        assert!(root.open_file("report.csv").is_err());
        let (tmp, name, _) = root.create_temp("", "t").unwrap();
        assert!(root.rename_into(&tmp, &name, "report.csv").is_err());
        // Removing a link removes the link only.
        root.remove_file("report.csv").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "keep"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn a_tree_with_links_inside_is_removed_without_following_them() {
        let (_dir, root, outside) = setup();
        let base = root.path.clone();
        std::fs::create_dir_all(base.join("p/r/tmp")).unwrap();
        std::fs::write(base.join("p/r/part"), "x").unwrap();
        symlink(&outside, base.join("p/r/tmp/out")).unwrap();
        symlink(outside.join("secret"), base.join("p/r/s")).unwrap();
        root.remove_tree("p/r").unwrap();
        assert!(!base.join("p/r").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn fifos_are_not_opened_as_files() {
        let (_dir, root, _) = setup();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.path.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = root.open_file("fifo").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
