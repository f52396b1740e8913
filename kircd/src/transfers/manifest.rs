//! What an offer says: the files, their sizes and hashes. The sender builds
//! it by reading every file once (BLAKE3 of the whole file and of each
//! piece); the recipient checks a received one against its limits before
//! anything is shown or written, and decides where each file will be saved.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kirc_proto::wire::v1 as wire;

use super::names::{self, NameError};

/// Bytes per piece: the unit hashed, verified and resumed from. A lost
/// connection costs at most the pieces in flight plus the one being
/// written; 256 KiB keeps a 4 GiB file's piece hashes at 512 KiB.
pub const PIECE_BYTES: u32 = 256 * 1024;

/// The piece sizes a received offer may use.
const PIECE_BYTES_RANGE: std::ops::RangeInclusive<u32> = 16 * 1024..=16 * 1024 * 1024;

/// The most files one offer may hold (and one the sender will make): a
/// manifest travels in one envelope, which this many short paths fill.
pub const MAX_FILES: usize = 1000;

/// The most pieces one file may have: its hashes are kept in one row.
pub const MAX_PIECES: u64 = 1 << 20;

pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is neither a file nor a folder")]
    NotAFile(PathBuf),
    #[error("{0} holds no files to send")]
    Empty(PathBuf),
    #[error("{0} holds more than {MAX_FILES} files; send it as an archive or in parts")]
    TooManyFiles(PathBuf),
    #[error("{0} is too large to send (at most {max} bytes per file)", max = MAX_PIECES * u64::from(PIECE_BYTES))]
    TooLarge(PathBuf),
    #[error("{0} has a name that is not valid UTF-8")]
    NotUtf8(PathBuf),
}

/// A file this actor offers, as read when the offer was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Where it is read from.
    pub source: PathBuf,
    /// Its path inside the offer.
    pub path: Vec<String>,
    pub size: u64,
    /// Its modification time when hashed, in nanoseconds: a file changed
    /// since is not sent.
    pub modified_ns: i64,
    pub hash: Hash,
    pub piece_hashes: Vec<Hash>,
}

impl LocalFile {
    pub fn pieces_hash(&self) -> Hash {
        pieces_hash(&self.piece_hashes)
    }
}

/// The hash the manifest names for a file's list of piece hashes.
pub fn pieces_hash(piece_hashes: &[Hash]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    for hash in piece_hashes {
        hasher.update(hash);
    }
    *hasher.finalize().as_bytes()
}

/// How many pieces a file of `size` bytes has.
pub fn piece_count(size: u64, piece_bytes: u32) -> u64 {
    size.div_ceil(u64::from(piece_bytes))
}

/// Reads what `path` names (a file, or a folder's files, symbolic links
/// left out) and hashes each file. Blocking: run it off the runtime.
pub fn read_local(path: &Path) -> Result<Vec<LocalFile>, ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    let root = utf8_name(path)?;
    let mut files = Vec::new();
    if metadata.is_file() {
        files.push(hash_local(path, vec![root])?);
    } else if metadata.is_dir() {
        let mut found = Vec::new();
        walk(path, &mut vec![root], &mut found)?;
        if found.is_empty() {
            return Err(ManifestError::Empty(path.to_owned()));
        }
        for (source, components) in found {
            files.push(hash_local(&source, components)?);
        }
    } else {
        return Err(ManifestError::NotAFile(path.to_owned()));
    }
    Ok(files)
}

fn utf8_name(path: &Path) -> Result<String, ManifestError> {
    path.file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ManifestError::NotUtf8(path.to_owned()))
}

/// The regular files under `folder`, in name order, with their offer paths.
fn walk(
    folder: &Path,
    prefix: &mut Vec<String>,
    found: &mut Vec<(PathBuf, Vec<String>)>,
) -> Result<(), ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: folder.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(folder)
        .map_err(read_error)?
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        // A symbolic link is not followed: it could lead anywhere, and a
        // folder's link to itself would never end.
        let kind = entry.file_type().map_err(read_error)?;
        if kind.is_symlink() {
            continue;
        }
        prefix.push(utf8_name(&path)?);
        if kind.is_dir() && prefix.len() < names::MAX_DEPTH {
            walk(&path, prefix, found)?;
        } else if kind.is_file() {
            if found.len() == MAX_FILES {
                return Err(ManifestError::TooManyFiles(folder.to_owned()));
            }
            found.push((path, prefix.clone()));
        }
        prefix.pop();
    }
    Ok(())
}

fn hash_local(source: &Path, path: Vec<String>) -> Result<LocalFile, ManifestError> {
    let read_error = |source_error| ManifestError::Read {
        path: source.to_owned(),
        source: source_error,
    };
    let mut file = std::fs::File::open(source).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if piece_count(metadata.len(), PIECE_BYTES) > MAX_PIECES {
        return Err(ManifestError::TooLarge(source.to_owned()));
    }
    let (size, hash, piece_hashes) = hash_reader(&mut file, PIECE_BYTES).map_err(read_error)?;
    Ok(LocalFile {
        source: source.to_owned(),
        path,
        size,
        modified_ns: modified_ns(&metadata),
        hash,
        piece_hashes,
    })
}

/// A file's modification time in nanoseconds since the epoch.
pub fn modified_ns(metadata: &std::fs::Metadata) -> i64 {
    metadata
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(metadata.mtime_nsec())
}

/// The size, whole hash and piece hashes of what `reader` yields.
pub fn hash_reader(
    reader: &mut impl Read,
    piece_bytes: u32,
) -> std::io::Result<(u64, Hash, Vec<Hash>)> {
    let mut whole = blake3::Hasher::new();
    let mut piece_hashes = Vec::new();
    let mut buffer = vec![0; piece_bytes as usize];
    let mut size = 0u64;
    loop {
        let filled = read_full(reader, &mut buffer)?;
        if filled == 0 {
            break;
        }
        whole.update(&buffer[..filled]);
        piece_hashes.push(*blake3::hash(&buffer[..filled]).as_bytes());
        size += filled as u64;
        if filled < buffer.len() {
            break;
        }
    }
    Ok((size, *whole.finalize().as_bytes(), piece_hashes))
}

/// Reads until `buffer` is full or the reader ends; the bytes read.
pub fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The offer's wire form.
pub fn offer(transfer_id: [u8; 16], files: &[LocalFile]) -> wire::FileOffer {
    wire::FileOffer {
        transfer_id: transfer_id.to_vec(),
        piece_bytes: PIECE_BYTES,
        files: files
            .iter()
            .map(|file| wire::OfferedFile {
                path: file.path.clone(),
                size: file.size,
                hash: file.hash.to_vec(),
                pieces_hash: file.pieces_hash().to_vec(),
            })
            .collect(),
    }
}

/// What a recipient's limits allow in an offer.
#[derive(Debug, Clone, Copy)]
pub struct OfferLimits {
    pub max_total_bytes: u64,
}

/// A received offer that passed its checks, with where each file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOffer {
    pub transfer_id: [u8; 16],
    pub piece_bytes: u32,
    pub files: Vec<IncomingFile>,
    pub total_bytes: u64,
    /// A name had to change to be saved.
    pub renamed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingFile {
    /// The path the sender gave.
    pub offered: Vec<String>,
    /// Where it will be saved, relative to the download folder (before
    /// the top-level name is made unique there).
    pub path: PathBuf,
    pub size: u64,
    pub hash: Hash,
    pub pieces_hash: Hash,
}

impl IncomingFile {
    /// The name had to change to be saved.
    pub fn renamed(&self) -> bool {
        self.path != self.offered.iter().collect::<PathBuf>()
    }
}

/// Why an offer is refused; each is counted as a malformed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the transfer id is not 16 bytes")]
    TransferId,
    #[error("a piece of {0} bytes is outside the allowed range")]
    PieceBytes(u32),
    #[error("the offer holds {0} files; at most {MAX_FILES}, at least one")]
    FileCount(usize),
    #[error("a file name is refused: {0}")]
    Name(#[from] NameError),
    #[error("a hash is not 32 bytes")]
    Hash,
    #[error("a file has more than {MAX_PIECES} pieces")]
    TooManyPieces,
    #[error("the offer is {0} bytes; the limit is {1}")]
    TooLarge(u64, u64),
    #[error("two files of the offer would be saved under one name")]
    Duplicate,
}

/// Checks a received offer: well-formed, within limits, every name made
/// safe. Pure: nothing is written.
pub fn check_offer(
    offer: &wire::FileOffer,
    limits: OfferLimits,
) -> Result<CheckedOffer, OfferError> {
    let transfer_id: [u8; 16] = offer
        .transfer_id
        .as_slice()
        .try_into()
        .map_err(|_| OfferError::TransferId)?;
    if !PIECE_BYTES_RANGE.contains(&offer.piece_bytes) {
        return Err(OfferError::PieceBytes(offer.piece_bytes));
    }
    if offer.files.is_empty() || offer.files.len() > MAX_FILES {
        return Err(OfferError::FileCount(offer.files.len()));
    }
    let mut files = Vec::with_capacity(offer.files.len());
    let mut total_bytes = 0u64;
    let mut renamed = false;
    let mut seen = HashSet::new();
    for file in &offer.files {
        let safe = names::sanitize_path(&file.path)?;
        renamed |= safe.changed;
        if !seen.insert(safe.path.clone()) {
            return Err(OfferError::Duplicate);
        }
        let hash: Hash = file
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| OfferError::Hash)?;
        let pieces_hash: Hash = file
            .pieces_hash
            .as_slice()
            .try_into()
            .map_err(|_| OfferError::Hash)?;
        if piece_count(file.size, offer.piece_bytes) > MAX_PIECES {
            return Err(OfferError::TooManyPieces);
        }
        total_bytes = total_bytes.saturating_add(file.size);
        files.push(IncomingFile {
            offered: file.path.clone(),
            path: safe.path,
            size: file.size,
            hash,
            pieces_hash,
        });
    }
    if total_bytes > limits.max_total_bytes {
        return Err(OfferError::TooLarge(total_bytes, limits.max_total_bytes));
    }
    // A file's path must not be a folder of another (`a` and `a/b`): one
    // of them could not be created.
    for file in &files {
        let mut ancestor = file.path.parent();
        while let Some(folder) = ancestor.filter(|folder| !folder.as_os_str().is_empty()) {
            if seen.contains(folder) {
                return Err(OfferError::Duplicate);
            }
            ancestor = folder.parent();
        }
    }
    Ok(CheckedOffer {
        transfer_id,
        piece_bytes: offer.piece_bytes,
        files,
        total_bytes,
        renamed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OfferLimits = OfferLimits {
        max_total_bytes: 1 << 30,
    };

    fn offered(path: &[&str], size: u64) -> wire::OfferedFile {
        wire::OfferedFile {
            path: path.iter().map(|c| (*c).to_owned()).collect(),
            size,
            hash: vec![1; 32],
            pieces_hash: vec![2; 32],
        }
    }

    fn offer_of(files: Vec<wire::OfferedFile>) -> wire::FileOffer {
        wire::FileOffer {
            transfer_id: vec![7; 16],
            piece_bytes: PIECE_BYTES,
            files,
        }
    }

    #[test]
    fn a_folder_is_read_in_name_order_with_its_links_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("holiday");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("b/2.txt"), b"two").unwrap();
        std::fs::write(root.join("a.txt"), b"one").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let files = read_local(&root).unwrap();
        let paths: Vec<String> = files.iter().map(|file| file.path.join("/")).collect();
        assert_eq!(paths, ["holiday/a.txt", "holiday/b/2.txt", "holiday/empty"]);
        assert_eq!(files[0].hash, *blake3::hash(b"one").as_bytes());
        assert_eq!(files[2].size, 0);
        assert!(files[2].piece_hashes.is_empty());
        assert!(matches!(
            read_local(&dir.path().join("missing")),
            Err(ManifestError::Read { .. })
        ));
        std::fs::create_dir(dir.path().join("nothing")).unwrap();
        assert!(matches!(
            read_local(&dir.path().join("nothing")),
            Err(ManifestError::Empty(_))
        ));
    }

    #[test]
    fn pieces_are_hashed_each_and_as_a_whole() {
        let data: Vec<u8> = (0..40_000u32).map(|n| n as u8).collect();
        let (size, whole, pieces) = hash_reader(&mut data.as_slice(), 16 * 1024).unwrap();
        assert_eq!(size, 40_000);
        assert_eq!(whole, *blake3::hash(&data).as_bytes());
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[2], *blake3::hash(&data[32 * 1024..]).as_bytes());
        assert_eq!(piece_count(40_000, 16 * 1024), 3);
        assert_eq!(piece_count(32 * 1024, 16 * 1024), 2);
        assert_eq!(piece_count(0, 16 * 1024), 0);
    }

    #[test]
    fn a_good_offer_is_taken_with_its_names_made_safe() {
        let checked = check_offer(
            &offer_of(vec![
                offered(&["photos", "a.jpg"], 10),
                offered(&["photos", "..", "b.jpg"], 20),
            ]),
            LIMITS,
        )
        .unwrap();
        assert_eq!(checked.total_bytes, 30);
        assert!(checked.renamed);
        assert_eq!(checked.files[1].path, PathBuf::from("photos/_/b.jpg"));
        assert_eq!(checked.files[1].offered, ["photos", "..", "b.jpg"]);
    }

    #[test]
    fn hostile_offers_are_refused() {
        let good = || offer_of(vec![offered(&["a"], 1)]);
        let cases: Vec<(wire::FileOffer, OfferError)> = vec![
            (
                wire::FileOffer {
                    transfer_id: vec![1; 3],
                    ..good()
                },
                OfferError::TransferId,
            ),
            (
                wire::FileOffer {
                    piece_bytes: 1,
                    ..good()
                },
                OfferError::PieceBytes(1),
            ),
            (offer_of(vec![]), OfferError::FileCount(0)),
            (
                offer_of(vec![offered(&["a"], 1); MAX_FILES + 1]),
                OfferError::FileCount(MAX_FILES + 1),
            ),
            (
                offer_of(vec![offered(&[], 1)]),
                OfferError::Name(NameError::Empty),
            ),
            (
                offer_of(vec![wire::OfferedFile {
                    hash: vec![1; 31],
                    ..offered(&["a"], 1)
                }]),
                OfferError::Hash,
            ),
            (
                offer_of(vec![offered(&["a"], u64::MAX)]),
                OfferError::TooManyPieces,
            ),
            (
                offer_of(vec![
                    offered(&["a"], 1 << 29),
                    offered(&["b"], 1 << 29),
                    offered(&["c"], 1),
                ]),
                OfferError::TooLarge((1 << 30) + 1, 1 << 30),
            ),
            (
                offer_of(vec![offered(&["a/b"], 1), offered(&["a\\b"], 1)]),
                OfferError::Duplicate,
            ),
            (
                offer_of(vec![offered(&["a"], 1), offered(&["a", "b"], 1)]),
                OfferError::Duplicate,
            ),
        ];
        for (offer, expected) in cases {
            assert_eq!(check_offer(&offer, LIMITS), Err(expected));
        }
    }

    #[test]
    fn the_offer_of_local_files_passes_the_recipients_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, vec![9u8; 300_000]).unwrap();
        let files = read_local(&file).unwrap();
        assert_eq!(files[0].piece_hashes.len(), 2);
        let checked = check_offer(&offer([3; 16], &files), LIMITS).unwrap();
        assert_eq!(checked.files[0].pieces_hash, files[0].pieces_hash());
        assert_eq!(checked.files[0].size, 300_000);
        assert!(!checked.renamed);
    }
}
