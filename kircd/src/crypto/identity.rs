//! An actor's identity: an Ed25519 signing key (who you are) and an X25519
//! box key (what others encrypt to), kept in a file only the owner can read.
//! The actor id derives from the signing key, so nobody can claim an id
//! without its key.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes in an actor id.
pub const ACTOR_ID_LEN: usize = 16;

const FILE_MAGIC: &str = "kirc-identity-v1";

/// An actor's id: the first 16 bytes of SHA-256("kirc actor id v1" ||
/// Ed25519 public key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId([u8; ACTOR_ID_LEN]);

impl ActorId {
    pub fn of(signing_key: &VerifyingKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"kirc actor id v1")
            .chain_update(signing_key.as_bytes())
            .finalize();
        let mut id = [0u8; ACTOR_ID_LEN];
        id.copy_from_slice(&digest[..ACTOR_ID_LEN]);
        ActorId(id)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ActorId)
    }

    pub fn as_bytes(&self) -> &[u8; ACTOR_ID_LEN] {
        &self.0
    }

    /// The id in groups of four hex digits, for comparing by eye or voice.
    pub fn fingerprint(&self) -> String {
        let hex = self.to_string();
        hex.as_bytes()
            .chunks(4)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({self})")
    }
}

impl std::str::FromStr for ActorId {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.replace(' ', "");
        if text.len() != ACTOR_ID_LEN * 2 {
            return Err("an actor id is 32 hex digits");
        }
        let mut id = [0u8; ACTOR_ID_LEN];
        for (index, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                .map_err(|_| "an actor id is 32 hex digits")?;
        }
        Ok(ActorId(id))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no identity at {path}\n  fix: create one with `kircd init`")]
    Missing { path: PathBuf },
    #[error("cannot read the identity {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the identity {path} can be read by other users (mode {mode:o})\n  fix: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the identity {path} is damaged: {problem}\n  fix: restore it from your backup")]
    Damaged {
        path: PathBuf,
        problem: &'static str,
    },
    #[error(
        "an identity already exists at {path}\n  fix: keep it (it is who you are to your contacts), or pass --force to replace it"
    )]
    Exists { path: PathBuf },
    #[error("cannot write the identity {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Both secret keys. Debug output never shows them.
pub struct Identity {
    signing: SigningKey,
    boxing: crypto_box::SecretKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn generate() -> Self {
        Identity {
            signing: SigningKey::generate(&mut OsRng),
            boxing: crypto_box::SecretKey::generate(&mut OsRng),
        }
    }

    /// The identity whose two keys derive from `seed` (SHA-256 with a
    /// label per key): the same seed, the same identity. For test vectors
    /// and fuzzing, where records must be sealed by known keys; `kircd
    /// init` uses [`Identity::generate`].
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            Sha256::new()
                .chain_update(label)
                .chain_update(seed)
                .finalize()
                .into()
        };
        Identity {
            signing: SigningKey::from_bytes(&derive(b"kirc identity seed v1: signing")),
            boxing: crypto_box::SecretKey::from_bytes(derive(b"kirc identity seed v1: box")),
        }
    }

    pub fn id(&self) -> ActorId {
        ActorId::of(&self.signing.verifying_key())
    }

    pub fn signing_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn box_key(&self) -> crypto_box::PublicKey {
        self.boxing.public_key()
    }

    pub(crate) fn box_secret(&self) -> &crypto_box::SecretKey {
        &self.boxing
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// A secret for one purpose, named by `context` (BLAKE3's key
    /// derivation from the signing key): what this actor encrypts at rest
    /// needs no second secret to keep, and no two purposes share a key.
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, self.signing.as_bytes())
    }

    /// Loads the identity, refusing a file that others can read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(IdentityError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            IdentityError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?);
        let damaged = |problem| IdentityError::Damaged {
            path: path.to_path_buf(),
            problem,
        };
        let mut lines = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty());
        if lines.next() != Some(FILE_MAGIC) {
            return Err(damaged("it does not start with kirc-identity-v1"));
        }
        let mut key = |label: &str| -> Result<Zeroizing<[u8; 32]>, IdentityError> {
            let line = lines.next().ok_or_else(|| damaged("a key is missing"))?;
            let encoded = line
                .strip_prefix(label)
                .ok_or_else(|| damaged("the keys are not in the expected order"))?;
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| damaged("a key is not base64"))?,
            );
            let mut key = Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(damaged("a key is not 32 bytes"));
            }
            key.copy_from_slice(&bytes);
            Ok(key)
        };
        let signing = key("signing: ")?;
        let boxing = key("box: ")?;
        Ok(Identity {
            signing: SigningKey::from_bytes(&signing),
            boxing: crypto_box::SecretKey::from_bytes(*boxing),
        })
    }

    /// Writes the identity with mode 0600, atomically; an existing file is
    /// replaced only if `replace`.
    pub fn save(&self, path: &Path, replace: bool) -> Result<(), IdentityError> {
        if path.exists() && !replace {
            return Err(IdentityError::Exists {
                path: path.to_path_buf(),
            });
        }
        let write_error = |source| IdentityError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        let text = Zeroizing::new(format!(
            "# K-IRC identity of actor {id}. Keep it secret and backed up: whoever holds it is you.\n{FILE_MAGIC}\nsigning: {}\nbox: {}\n",
            STANDARD.encode(self.signing.to_bytes()),
            STANDARD.encode(self.boxing.to_bytes()),
            id = self.id()
        ));
        crate::files::write_atomically(path, text.as_bytes(), 0o600).map_err(write_error)
    }
}

/// The default identity file: `$XDG_DATA_HOME/kirc/identity.key`.
pub fn default_path() -> PathBuf {
    directories::ProjectDirs::from("", "", "kirc")
        .map(|dirs| dirs.data_local_dir().join("identity.key"))
        .unwrap_or_else(|| PathBuf::from("identity.key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let identity = Identity::generate();
        identity.save(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Identity::load(&path).unwrap();
        assert_eq!(loaded.id(), identity.id());
        assert_eq!(loaded.box_key(), identity.box_key());
        assert!(!format!("{loaded:?}").contains("signing:"));
    }

    #[test]
    fn refuses_to_overwrite_without_replace_and_to_load_an_exposed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        Identity::generate().save(&path, false).unwrap();
        let err = Identity::generate().save(&path, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        Identity::generate().save(&path, true).unwrap();

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let err = Identity::load(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("kircd init"), "{err}");
    }

    #[test]
    fn damaged_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(&path, "kirc-identity-v1\nsigning: AAAA\nbox: AAAA\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Identity::load(&path).unwrap_err();
        assert!(err.to_string().contains("not 32 bytes"), "{err}");
    }

    #[test]
    fn actor_id_parses_and_prints() {
        let id = Identity::generate().id();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<ActorId>().unwrap(), id);
        assert_eq!(id.fingerprint().replace(' ', ""), text);
        assert!("xyz".parse::<ActorId>().is_err());
    }
}
