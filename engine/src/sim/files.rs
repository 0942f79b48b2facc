//! The simulated server's file storage: uploaded parts, finished files, downloads.
//!
//! Parts are checked by `files.md`'s rules (at most 512 KiB; every part but the last of one
//! `part_size` that divides 512 KiB and is a multiple of 1 KiB; the last no larger; secret-chat
//! parts are ciphertext, so a multiple of 16). Where the bytes go is a [`FileKeeping`] choice:
//! in memory, only counted (throughput benches), or on disk, so multi-gigabyte files can be
//! uploaded *and* downloaded without the server holding them in memory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use secretchat_schema::api::{enums as api, types as t};
use sha2::{Digest, Sha256};

use crate::transport::RpcError;

/// Largest part (`files.md`).
const MAX_PART: usize = 512 * 1024;
/// Most parts a file may have (8000 × 512 KiB: the premium limit).
pub const MAX_PARTS: i32 = 8000;

/// Where uploaded bytes are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKeeping {
    /// In memory (the default): small files in tests.
    Memory,
    /// Not kept, only counted and hashed: benchmarks; such files cannot be downloaded.
    CountOnly,
    /// In files under this directory: very large files that are also downloaded.
    Disk(PathBuf),
}

fn bad(msg: &str) -> RpcError {
    RpcError::new(400, msg)
}

fn io(_: std::io::Error) -> RpcError {
    RpcError::new(500, "STORAGE_IO")
}

/// An upload key: (user, device, file id).
type UploadKey = (i64, u32, i64);

#[derive(Default)]
struct Upload {
    /// Part number → length.
    lens: BTreeMap<i32, usize>,
    /// Part number → bytes (memory keeping).
    bytes: BTreeMap<i32, Vec<u8>>,
    /// Parts written at `part × 512 KiB` (disk keeping).
    disk: Option<(PathBuf, File)>,
    /// SHA-256 of the bytes while parts arrive in order: (next part, hasher).
    digest: (i32, Option<Sha256>),
    /// `file_total_parts` of the first `saveBigFilePart`.
    total: Option<i32>,
}

enum Data {
    Memory(Vec<u8>),
    Disk(PathBuf),
    Gone,
}

struct Stored {
    id: i64,
    access_hash: i64,
    data: Data,
    size: u64,
    key_fingerprint: i32,
}

/// Uploads in progress and finished files.
pub(super) struct FileStore {
    keeping: FileKeeping,
    uploads: HashMap<UploadKey, Upload>,
    files: HashMap<i64, Stored>,
    digests: HashMap<i64, [u8; 32]>,
    /// Encrypted bytes received in parts (for reports).
    pub(super) bytes_in: u64,
}

impl FileStore {
    pub(super) fn new() -> Self {
        Self {
            keeping: FileKeeping::Memory,
            uploads: HashMap::new(),
            files: HashMap::new(),
            digests: HashMap::new(),
            bytes_in: 0,
        }
    }

    pub(super) fn set_keeping(&mut self, keeping: FileKeeping) {
        self.keeping = keeping;
    }

    pub(super) fn digest(&self, id: i64) -> Option<[u8; 32]> {
        self.digests.get(&id).copied()
    }

    /// Stores one part. `total`: `file_total_parts` of `saveBigFilePart`.
    pub(super) fn save_part(
        &mut self,
        key: UploadKey,
        part: i32,
        bytes: Vec<u8>,
        total: Option<i32>,
    ) -> Result<(), RpcError> {
        if !(0..MAX_PARTS).contains(&part) {
            return Err(bad("FILE_PART_INVALID"));
        }
        if bytes.len() > MAX_PART {
            return Err(bad("FILE_PART_TOO_BIG"));
        }
        if bytes.is_empty() {
            return Err(bad("FILE_PART_EMPTY"));
        }
        if !bytes.len().is_multiple_of(16) {
            return Err(bad("FILE_PART_SIZE_INVALID"));
        }
        let keeping = self.keeping.clone();
        let up = self.uploads.entry(key).or_default();
        if let Some(n) = total {
            if !(1..=MAX_PARTS).contains(&n) || part >= n || up.total.is_some_and(|t| t != n) {
                return Err(bad("FILE_PARTS_INVALID"));
            }
            up.total = Some(n);
        }
        let hasher = up.digest.1.get_or_insert_with(Sha256::new);
        if up.digest.0 == part {
            up.digest.0 += 1;
            hasher.update(&bytes);
        } else if up.lens.get(&part) != Some(&bytes.len()) {
            // Out of order (not a plain repeat): no digest for this upload.
            up.digest = (-1, None);
        }
        match keeping {
            FileKeeping::Memory => {
                up.bytes.insert(part, bytes.clone());
            }
            FileKeeping::CountOnly => {}
            FileKeeping::Disk(dir) => {
                if up.disk.is_none() {
                    let path = dir.join(format!("upload-{}-{}-{}", key.0, key.1, key.2));
                    let f = OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .read(true)
                        .write(true)
                        .open(&path)
                        .map_err(io)?;
                    up.disk = Some((path, f));
                }
                if let Some((_, f)) = up.disk.as_mut() {
                    f.seek(SeekFrom::Start(part as u64 * MAX_PART as u64))
                        .map_err(io)?;
                    f.write_all(&bytes).map_err(io)?;
                }
            }
        }
        self.bytes_in += bytes.len() as u64;
        up.lens.insert(part, bytes.len());
        Ok(())
    }

    /// Turns an upload of `parts` parts into a stored file; returns its `encryptedFile`. A
    /// repeat (the reply to the first was lost) returns the same file.
    pub(super) fn finish(
        &mut self,
        key: UploadKey,
        parts: i32,
        key_fingerprint: i32,
        access_hash: i64,
    ) -> Result<api::EncryptedFile, RpcError> {
        let id = key.2;
        if let Some(stored) = self.files.get(&id) {
            return Ok(encrypted_file(stored));
        }
        let up = self
            .uploads
            .get(&key)
            .ok_or_else(|| bad("FILE_PARTS_INVALID"))?;
        if parts < 1 || up.lens.len() != parts as usize || up.lens.keys().copied().ne(0..parts) {
            return Err(bad("FILE_PARTS_INVALID"));
        }
        if up.total.is_some_and(|t| t != parts) {
            return Err(bad("FILE_PARTS_INVALID"));
        }
        let part_size = up.lens.get(&0).copied().unwrap_or(0);
        let last = parts - 1;
        for (&n, &len) in &up.lens {
            if n < last && len != part_size {
                return Err(bad("FILE_PART_SIZE_CHANGED"));
            }
            if n == last && len > part_size {
                return Err(bad("FILE_PART_SIZE_CHANGED"));
            }
        }
        if parts > 1 && (!part_size.is_multiple_of(1024) || !MAX_PART.is_multiple_of(part_size)) {
            return Err(bad("FILE_PART_SIZE_INVALID"));
        }
        let Some(mut up) = self.uploads.remove(&key) else {
            return Err(bad("FILE_PARTS_INVALID"));
        };
        let size: u64 = up.lens.values().map(|&l| l as u64).sum();
        if let (true, Some(h)) = (up.digest.0 == parts, up.digest.1.take()) {
            self.digests.insert(id, h.finalize().into());
        }
        let data = match (&self.keeping, up.disk.take()) {
            (FileKeeping::Disk(dir), Some((path, f))) => {
                let dest = dir.join(format!("file-{id}"));
                if part_size == MAX_PART || parts == 1 {
                    drop(f);
                    std::fs::rename(&path, &dest).map_err(io)?;
                } else {
                    compact(&path, f, &dest, part_size, &up.lens)?;
                }
                Data::Disk(dest)
            }
            (FileKeeping::Memory, _) => {
                let mut v = Vec::with_capacity(size as usize);
                for b in up.bytes.into_values() {
                    v.extend_from_slice(&b);
                }
                Data::Memory(v)
            }
            _ => Data::Gone,
        };
        let stored = Stored {
            id,
            access_hash,
            data,
            size,
            key_fingerprint,
        };
        let out = encrypted_file(&stored);
        self.files.insert(id, stored);
        Ok(out)
    }

    /// A stored file's `encryptedFile`, checking the access hash (`inputEncryptedFile`).
    pub(super) fn existing(
        &self,
        id: i64,
        access_hash: i64,
    ) -> Result<api::EncryptedFile, RpcError> {
        let f = self.files.get(&id).ok_or_else(|| bad("FILE_ID_INVALID"))?;
        if f.access_hash != access_hash {
            return Err(bad("FILE_ID_INVALID"));
        }
        Ok(encrypted_file(f))
    }

    /// `upload.getFile` with `files.md`'s offset/limit rules.
    pub(super) fn read(
        &self,
        id: i64,
        access_hash: i64,
        offset: i64,
        limit: i32,
        precise: bool,
    ) -> Result<Vec<u8>, RpcError> {
        let f = self.files.get(&id).ok_or_else(|| bad("FILE_ID_INVALID"))?;
        if f.access_hash != access_hash {
            return Err(bad("FILE_ID_INVALID"));
        }
        let unit = if precise { 1024 } else { 4096 };
        let ok = offset >= 0
            && limit > 0
            && limit <= 1 << 20
            && offset % unit == 0
            && limit as i64 % unit == 0
            && (precise || (1 << 20) % limit == 0)
            // A chunk never crosses a 1 MiB boundary.
            && offset / (1 << 20) == (offset + limit as i64 - 1) / (1 << 20);
        if !ok {
            return Err(bad("LIMIT_INVALID"));
        }
        let start = (offset as u64).min(f.size);
        let end = (start + limit as u64).min(f.size);
        match &f.data {
            Data::Memory(v) => Ok(v[start as usize..end as usize].to_vec()),
            Data::Disk(path) => {
                let mut file = File::open(path).map_err(io)?;
                file.seek(SeekFrom::Start(start)).map_err(io)?;
                let mut out = vec![0u8; (end - start) as usize];
                file.read_exact(&mut out).map_err(io)?;
                Ok(out)
            }
            Data::Gone => Err(bad("FILE_NOT_KEPT")),
        }
    }

    /// Flips a byte of a stored file.
    pub(super) fn tamper(&mut self, id: i64, offset: u64) {
        let Some(f) = self.files.get_mut(&id) else {
            return;
        };
        match &mut f.data {
            Data::Memory(v) => {
                if let Some(b) = v.get_mut(offset as usize) {
                    *b ^= 0x55;
                }
            }
            Data::Disk(path) => {
                let _ = flip(path, offset);
            }
            Data::Gone => {}
        }
    }
}

fn flip(path: &Path, offset: u64) -> std::io::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut b)?;
    b[0] ^= 0x55;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&b)
}

/// Rewrites parts stored at `n × 512 KiB` contiguously (parts smaller than 512 KiB).
fn compact(
    path: &Path,
    mut from: File,
    dest: &Path,
    part_size: usize,
    lens: &BTreeMap<i32, usize>,
) -> Result<(), RpcError> {
    let mut out = File::create(dest).map_err(io)?;
    let mut buf = vec![0u8; part_size];
    for (&n, &len) in lens {
        from.seek(SeekFrom::Start(n as u64 * MAX_PART as u64))
            .map_err(io)?;
        from.read_exact(&mut buf[..len]).map_err(io)?;
        out.write_all(&buf[..len]).map_err(io)?;
    }
    drop(from);
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn encrypted_file(f: &Stored) -> api::EncryptedFile {
    api::EncryptedFile::EncryptedFile(t::EncryptedFile {
        id: f.id,
        access_hash: f.access_hash,
        size: f.size as i64,
        dc_id: 2,
        key_fingerprint: f.key_fingerprint,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store(keeping: FileKeeping) -> FileStore {
        let mut s = FileStore::new();
        s.set_keeping(keeping);
        s
    }

    #[test]
    fn part_size_rules() {
        let mut s = store(FileKeeping::Memory);
        let k = (1, 0, 7);
        assert_eq!(
            s.save_part(k, 0, vec![0; MAX_PART + 16], None)
                .unwrap_err()
                .message,
            "FILE_PART_TOO_BIG"
        );
        assert_eq!(
            s.save_part(k, 0, vec![], None).unwrap_err().message,
            "FILE_PART_EMPTY"
        );
        assert_eq!(
            s.save_part(k, MAX_PARTS, vec![0; 16], None)
                .unwrap_err()
                .message,
            "FILE_PART_INVALID"
        );
        // Parts of 1 KiB + 16 bytes: the size changes between parts 0 and 1.
        s.save_part(k, 0, vec![0; 2048], None).unwrap();
        s.save_part(k, 1, vec![0; 1024], None).unwrap();
        s.save_part(k, 2, vec![0; 16], None).unwrap();
        assert_eq!(
            s.finish(k, 3, 0, 1).unwrap_err().message,
            "FILE_PART_SIZE_CHANGED"
        );
        // 3 KiB does not divide 512 KiB.
        let k = (1, 0, 8);
        s.save_part(k, 0, vec![0; 3072], None).unwrap();
        s.save_part(k, 1, vec![0; 16], None).unwrap();
        assert_eq!(
            s.finish(k, 2, 0, 1).unwrap_err().message,
            "FILE_PART_SIZE_INVALID"
        );
        // A missing part.
        let k = (1, 0, 9);
        s.save_part(k, 0, vec![0; 1024], None).unwrap();
        s.save_part(k, 2, vec![0; 16], None).unwrap();
        assert_eq!(
            s.finish(k, 3, 0, 1).unwrap_err().message,
            "FILE_PARTS_INVALID"
        );
        // Big-file totals must agree.
        let k = (1, 0, 10);
        s.save_part(k, 0, vec![0; 1024], Some(2)).unwrap();
        assert_eq!(
            s.save_part(k, 1, vec![0; 16], Some(3)).unwrap_err().message,
            "FILE_PARTS_INVALID"
        );
    }

    #[test]
    fn disk_keeping_compacts_small_parts_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("sim-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = store(FileKeeping::Disk(dir.clone()));
        let k = (1, 0, 11);
        let parts: Vec<Vec<u8>> = (0..3u8)
            .map(|i| vec![i + 1; if i == 2 { 48 } else { 4096 }])
            .collect();
        // Out of order, with a repeat.
        for &n in &[1usize, 0, 2, 1] {
            s.save_part(k, n as i32, parts[n].clone(), None).unwrap();
        }
        let f = s.finish(k, 3, 5, 99).unwrap();
        let api::EncryptedFile::EncryptedFile(f) = f else {
            panic!("not a file")
        };
        assert_eq!(f.size, 4096 * 2 + 48);
        let all = s.read(11, 99, 0, 1 << 20, false).unwrap();
        assert_eq!(all, parts.concat());
        assert_eq!(
            s.read(11, 98, 0, 4096, false).unwrap_err().message,
            "FILE_ID_INVALID"
        );
        assert_eq!(
            s.read(11, 99, 1024, 4096, false).unwrap_err().message,
            "LIMIT_INVALID"
        );
        s.tamper(11, 5);
        assert_eq!(s.read(11, 99, 0, 4096, false).unwrap()[5], 1 ^ 0x55);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
