//! The contact book: every contact with its verified profile and the keys
//! derived from it, held in memory. A stored profile is verified once, when
//! the book loads it or admits it; the pair key (the X25519 agreement) and
//! the one-to-one conversation id are derived then too. Everything that
//! needs a contact (sealing, the inbox's checks, delivery, the API) asks the
//! book; nothing re-verifies a stored profile per use.
//!
//! The book also says whether the daemon's state is loaded: it is the last
//! thing loading fills, and commands wait for it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::VerifyingKey;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use sqlx::PgPool;
use uuid::Uuid;

use crate::crypto::envelope::{PairKey, conversation_id};
use crate::crypto::identity::{ActorId, Identity};
use crate::crypto::profile::{VerifiedProfile, verify_profile};
use crate::store::{self, ContactState, SavedContact, StoreError, StoredContact};

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored profile of contact {0} no longer verifies")]
    DamagedContact(String),
}

/// A contact, verified.
#[derive(Debug, Clone)]
pub struct Contact {
    pub actor_id: ActorId,
    pub display_name: String,
    pub signing_key: VerifyingKey,
    pub box_key: crypto_box::PublicKey,
    /// How to reach the contact's inboxes.
    pub access: wire::KafkaAccess,
    pub profile_updated_at_unix_ms: i64,
    pub state: ContactState,
    /// The contact has accepted us too.
    pub peer_accepted: bool,
    pub added_at_unix_ms: i64,
    /// The one-to-one conversation with this contact.
    pub conversation_id: Uuid,
    /// The box between us, computed once per profile.
    pub pair: Arc<PairKey>,
    /// The contact's kircd reads receipt ranges (its profile says so).
    pub reads_receipt_ranges: bool,
    /// The contact's kircd reads reactions, edits and deletions.
    pub reads_message_acts: bool,
}

impl Contact {
    fn new(me: &Identity, verified: &VerifiedProfile, row: &StoredContact) -> Self {
        Contact {
            actor_id: verified.actor_id,
            display_name: verified.profile.display_name.clone(),
            signing_key: verified.signing_key,
            box_key: verified.box_key.clone(),
            access: verified.profile.kafka.clone().unwrap_or_default(),
            profile_updated_at_unix_ms: verified.profile.updated_at_unix_ms,
            state: row.state,
            peer_accepted: row.peer_accepted,
            added_at_unix_ms: row.added_at_unix_ms,
            conversation_id: conversation_id(me.id(), verified.actor_id),
            pair: Arc::new(PairKey::new(me, &verified.box_key)),
            reads_receipt_ranges: verified
                .profile
                .features
                .contains(&(wire::Feature::ReceiptRanges as i32)),
            reads_message_acts: verified
                .profile
                .features
                .contains(&(wire::Feature::MessageActs as i32)),
        }
    }

    pub fn is_accepted(&self) -> bool {
        self.state == ContactState::Accepted
    }
}

/// Why a reference names no single contact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no contact matches {0:?}; `ListContacts` shows them")]
    Unknown(String),
    #[error("{0:?} matches several contacts; use the actor id")]
    Ambiguous(String),
}

/// A command came before the daemon's state was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("starting: kircd has not reached its database yet; see GetStatus")]
pub struct NotLoaded;

#[derive(Debug)]
pub struct ContactBook {
    identity: Arc<Identity>,
    contacts: RwLock<HashMap<ActorId, Arc<Contact>>>,
    loaded: tokio::sync::watch::Sender<bool>,
    /// Bumped after every change, for those who act on the contacts (the
    /// direct path opens to a contact once it is accepted, closes when it is
    /// blocked).
    changes: tokio::sync::watch::Sender<u64>,
}

impl ContactBook {
    pub fn new(identity: Arc<Identity>) -> Self {
        ContactBook {
            identity,
            contacts: RwLock::new(HashMap::new()),
            loaded: tokio::sync::watch::Sender::new(false),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes whenever a contact is added or changed.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    pub fn me(&self) -> ActorId {
        self.identity.id()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ActorId, Arc<Contact>>> {
        // A panic while holding the lock leaves a map of whole entries.
        self.contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ActorId, Arc<Contact>>> {
        self.contacts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads every stored contact, verifying each profile, and marks the
    /// book loaded. A profile stored before its stamp was kept gets it now.
    pub async fn load(&self, pool: &PgPool) -> Result<Vec<Arc<Contact>>, BookError> {
        let mut contacts = Vec::new();
        for row in store::contacts(pool).await? {
            let contact = Arc::new(self.verify_stored(&row)?);
            if row.profile_updated_at_unix_ms == 0 {
                store::set_profile_stamp(
                    pool,
                    contact.actor_id,
                    contact.profile_updated_at_unix_ms,
                )
                .await?;
            }
            contacts.push(contact);
        }
        {
            let mut known = self.write();
            known.clear();
            known.extend(
                contacts
                    .iter()
                    .map(|contact| (contact.actor_id, Arc::clone(contact))),
            );
        }
        self.changed();
        Ok(contacts)
    }

    /// Marks the daemon's state loaded (once everything else that loading
    /// fills is in place).
    pub fn set_loaded(&self) {
        self.loaded.send_replace(true);
    }

    /// Whether commands may run: the state is loaded.
    pub fn check_loaded(&self) -> Result<(), NotLoaded> {
        if *self.loaded.borrow() {
            Ok(())
        } else {
            Err(NotLoaded)
        }
    }

    /// Waits until the state is loaded.
    pub async fn wait_loaded(&self) {
        let mut loaded = self.loaded.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = loaded.wait_for(|loaded| *loaded).await;
    }

    fn verify_stored(&self, row: &StoredContact) -> Result<Contact, BookError> {
        let shown = ActorId::from_slice(&row.actor_id)
            .map_or_else(|| String::from("?"), |id| id.to_string());
        let verified = wire::SignedProfile::decode(row.signed_profile.as_slice())
            .ok()
            .and_then(|signed| verify_profile(&signed).ok())
            .filter(|verified| verified.actor_id.as_bytes().as_slice() == row.actor_id)
            .ok_or(BookError::DamagedContact(shown))?;
        Ok(Contact::new(&self.identity, &verified, row))
    }

    /// Stores `verified` (a contact, or an update of one) with `state` and
    /// admits the result. The stored profile stays if it is newer.
    pub async fn save(
        &self,
        pool: &PgPool,
        verified: &VerifiedProfile,
        state: ContactState,
        peer_accepted: bool,
    ) -> Result<(Arc<Contact>, bool), BookError> {
        let me = self.me();
        let saved = store::save_contact(
            pool,
            me,
            store::ProfileColumns {
                actor_id: verified.actor_id,
                display_name: &verified.profile.display_name,
                signing_key: verified.signing_key.as_bytes(),
                box_key: verified.box_key.as_bytes(),
                signed_profile: &verified.signed.encode_to_vec(),
                updated_at_unix_ms: verified.profile.updated_at_unix_ms,
            },
            conversation_id(me, verified.actor_id),
            state,
            peer_accepted,
            profile_stamp,
        )
        .await?;
        let SavedContact {
            contact: row,
            profile_newer,
        } = saved;
        let contact = if profile_newer {
            Contact::new(&self.identity, verified, &row)
        } else {
            self.updated(&row)?
        };
        Ok((self.admit(contact), profile_newer))
    }

    /// Sets a contact's state; `None` if it is not a contact.
    pub async fn set_state(
        &self,
        pool: &PgPool,
        actor: ActorId,
        state: ContactState,
    ) -> Result<Option<Arc<Contact>>, BookError> {
        let Some(row) = store::set_contact_state(pool, actor, state).await? else {
            return Ok(None);
        };
        let contact = self.updated(&row)?;
        Ok(Some(self.admit(contact)))
    }

    /// The cached contact with `row`'s state, or `row` verified if the book
    /// does not hold it.
    fn updated(&self, row: &StoredContact) -> Result<Contact, BookError> {
        let cached = ActorId::from_slice(&row.actor_id).and_then(|id| self.get(&id));
        match cached {
            Some(cached) => Ok(Contact {
                state: row.state,
                peer_accepted: row.peer_accepted,
                ..Contact::clone(&cached)
            }),
            None => self.verify_stored(row),
        }
    }

    /// Admits a verified contact without storing it: for checks run outside
    /// a daemon (unit tests of the inbox, fuzzing).
    pub fn admit_verified(
        &self,
        verified: &VerifiedProfile,
        state: ContactState,
        added_at_unix_ms: i64,
    ) -> Arc<Contact> {
        let row = StoredContact {
            actor_id: verified.actor_id.as_bytes().to_vec(),
            signed_profile: Vec::new(),
            profile_updated_at_unix_ms: verified.profile.updated_at_unix_ms,
            state,
            peer_accepted: true,
            added_at_unix_ms,
        };
        self.admit(Contact::new(&self.identity, verified, &row))
    }

    fn admit(&self, contact: Contact) -> Arc<Contact> {
        let contact = Arc::new(contact);
        self.write().insert(contact.actor_id, Arc::clone(&contact));
        self.changed();
        contact
    }

    pub fn get(&self, actor: &ActorId) -> Option<Arc<Contact>> {
        self.read().get(actor).cloned()
    }

    /// A contact by actor id, display name or conversation id.
    pub fn resolve(&self, reference: &str) -> Result<Arc<Contact>, LookupError> {
        let reference = reference.trim();
        let contacts = self.read();
        if let Ok(id) = reference.parse::<ActorId>()
            && let Some(contact) = contacts.get(&id)
        {
            return Ok(Arc::clone(contact));
        }
        let matches: Vec<&Arc<Contact>> = contacts
            .values()
            .filter(|contact| {
                contact.display_name.eq_ignore_ascii_case(reference)
                    || contact.conversation_id.to_string() == reference
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(Arc::clone(one)),
            [] => Err(LookupError::Unknown(reference.to_owned())),
            _ => Err(LookupError::Ambiguous(reference.to_owned())),
        }
    }

    /// The contact of a one-to-one conversation.
    pub fn by_conversation(&self, conversation: Uuid) -> Option<Arc<Contact>> {
        self.read()
            .values()
            .find(|contact| contact.conversation_id == conversation)
            .cloned()
    }

    /// Every contact, in the order they were added.
    pub fn all(&self) -> Vec<Arc<Contact>> {
        let mut all: Vec<Arc<Contact>> = self.read().values().cloned().collect();
        all.sort_by_key(|contact| contact.added_at_unix_ms);
        all
    }

    /// Contacts we exchange messages with.
    pub fn accepted(&self) -> Vec<Arc<Contact>> {
        self.read()
            .values()
            .filter(|contact| contact.is_accepted())
            .cloned()
            .collect()
    }

    /// Accepted contacts that have accepted us too: the ones that take our
    /// presence. A contact we have just added by its invite has not yet
    /// read our request, and would count a presence that overtook the
    /// request as a stranger's.
    pub fn mutual(&self) -> Vec<Arc<Contact>> {
        self.read()
            .values()
            .filter(|contact| contact.is_accepted() && contact.peer_accepted)
            .cloned()
            .collect()
    }
}

/// The stamp of a stored signed profile, read without verifying it: only to
/// compare with a newer one, which is verified.
fn profile_stamp(bytes: &[u8]) -> Option<i64> {
    wire::SignedProfile::decode(bytes)
        .ok()
        .and_then(|signed| wire::PublicProfile::decode(signed.profile.as_slice()).ok())
        .map(|profile| profile.updated_at_unix_ms)
}

#[cfg(test)]
mod tests;
