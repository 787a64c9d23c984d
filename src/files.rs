//! The files a config names (certificates and keys, the certificates
//! directory, the backend CA bundle, error pages), read once. When the master
//! validates a config they come from disk and every read is kept; each worker
//! the master starts for that config (first start, reload, restart after a
//! crash, memory guard) validates the same text against what was kept, so a
//! file moved or broken since can never keep a worker from starting: every
//! worker runs the last configuration that validated, files included.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// One kept read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kept {
    File(Vec<u8>),
    /// A directory's entries, sorted.
    Dir(Vec<PathBuf>),
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// Reads go to disk (and are kept); otherwise only kept reads answer.
    disk: bool,
    kept: BTreeMap<PathBuf, Kept>,
}

/// Names and sizes only: the files hold private keys.
impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.kept.iter().map(|(path, kept)| {
                let size = match kept {
                    Kept::File(bytes) => format!("{} bytes", bytes.len()),
                    Kept::Dir(entries) => format!("{} entries", entries.len()),
                };
                (path, size)
            }))
            .finish()
    }
}

const MAGIC: &[u8] = b"lopache-files-1\n";

impl Files {
    /// Reads from disk, keeping each.
    pub fn from_disk() -> Files {
        Files {
            disk: true,
            kept: BTreeMap::new(),
        }
    }

    /// The file at `path`.
    pub fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        if let Some(Kept::File(bytes)) = self.kept.get(path) {
            return Ok(bytes.clone());
        }
        if !self.disk {
            return Err(self.not_kept(path));
        }
        let bytes = std::fs::read(path)?;
        self.kept
            .insert(path.to_path_buf(), Kept::File(bytes.clone()));
        Ok(bytes)
    }

    /// The entries of the directory at `path`, sorted.
    pub fn read_dir(&mut self, path: &Path) -> io::Result<Vec<PathBuf>> {
        if let Some(Kept::Dir(entries)) = self.kept.get(path) {
            return Ok(entries.clone());
        }
        if !self.disk {
            return Err(self.not_kept(path));
        }
        let mut entries = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        entries.sort();
        self.kept
            .insert(path.to_path_buf(), Kept::Dir(entries.clone()));
        Ok(entries)
    }

    fn not_kept(&self, path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} was not read when the config was validated",
                path.display()
            ),
        )
    }

    /// What was kept, for a worker: only kept reads will answer there.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.kept.len() as u64).to_le_bytes());
        for (path, kept) in &self.kept {
            put(&mut out, path.as_os_str().as_encoded_bytes());
            match kept {
                Kept::File(bytes) => {
                    out.push(b'f');
                    put(&mut out, bytes);
                }
                Kept::Dir(entries) => {
                    out.push(b'd');
                    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
                    for e in entries {
                        put(&mut out, e.as_os_str().as_encoded_bytes());
                    }
                }
            }
        }
        out
    }

    /// The kept reads from [`encode`](Self::encode)'s bytes; nothing else
    /// answers.
    pub fn decode(bytes: &[u8]) -> Result<Files, String> {
        let mut input = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a lopache file snapshot")?;
        let count = u64::from_le_bytes(take_array(&mut input)?);
        let mut kept = BTreeMap::new();
        for _ in 0..count {
            let path = take_path(&mut input)?;
            let (&kind, rest) = input.split_first().ok_or("snapshot cut short")?;
            input = rest;
            let entry = match kind {
                b'f' => Kept::File(take(&mut input)?.to_vec()),
                b'd' => {
                    let n = u64::from_le_bytes(take_array(&mut input)?);
                    let entries = (0..n)
                        .map(|_| take_path(&mut input))
                        .collect::<Result<Vec<_>, _>>()?;
                    Kept::Dir(entries)
                }
                _ => return Err("unknown entry in a file snapshot".into()),
            };
            kept.insert(path, entry);
        }
        Ok(Files { disk: false, kept })
    }
}

/// A length-prefixed byte string.
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = u64::from_le_bytes(take_array(input)?) as usize;
    if input.len() < len {
        return Err("snapshot cut short".into());
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Ok(bytes)
}

fn take_array(input: &mut &[u8]) -> Result<[u8; 8], String> {
    let (head, rest) = input.split_first_chunk::<8>().ok_or("snapshot cut short")?;
    *input = rest;
    Ok(*head)
}

fn take_path(input: &mut &[u8]) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(take(input)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_answers_what_was_read_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("lopache-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.crt"), b"cert").unwrap();
        std::fs::write(dir.join("b.key"), b"key").unwrap();
        let mut disk = Files::from_disk();
        assert_eq!(
            disk.read_dir(&dir).unwrap(),
            [dir.join("a.crt"), dir.join("b.key")]
        );
        assert_eq!(disk.read(&dir.join("a.crt")).unwrap(), b"cert");
        assert!(disk.read(&dir.join("missing")).is_err());
        // The files change on disk; the snapshot does not.
        std::fs::remove_dir_all(&dir).unwrap();
        let mut kept = Files::decode(&disk.encode()).unwrap();
        assert_eq!(kept.read(&dir.join("a.crt")).unwrap(), b"cert");
        assert_eq!(kept.read_dir(&dir).unwrap().len(), 2);
        assert!(
            kept.read(&dir.join("b.key")).is_err(),
            "never read, never kept"
        );
        assert!(Files::decode(b"garbage").is_err());
        assert!(Files::decode(&disk.encode()[..20]).is_err());
    }
}
