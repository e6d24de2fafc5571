//! A real S3-protocol server for tests: s3s-fs on a free loopback port, with its data
//! directory in a temporary folder (a bucket is a directory in it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const ACCESS_KEY: &str = "reportjob-test-ak";
pub const SECRET_KEY: &str = "reportjob-test-secret-key";

pub struct S3Server {
    pub port: u16,
    pub data: tempfile::TempDir,
    child: Child,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("S3S_FS") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/reportjob-tools/s3s-fs/bin/s3s-fs")
}

use super::free_port;

impl S3Server {
    /// Starts s3s-fs with a bucket named `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let bin = binary();
        assert!(
            bin.exists(),
            "s3s-fs is not installed at {}: scripts/test.sh installs it",
            bin.display()
        );
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join(bucket)).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        super::eventually_blocking("s3s-fs to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        S3Server { port, data, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file holding an object.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.path().join(bucket).join(key)
    }

    /// Multipart uploads still open (s3s-fs keeps one `.upload-<id>.json` per upload).
    pub fn open_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
            .collect()
    }

    /// Every object file under a bucket directory (relative paths), skipping metadata.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(
                        path.strip_prefix(base)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &self.data.path().join(bucket),
            &self.data.path().join(bucket),
            &mut out,
        );
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
