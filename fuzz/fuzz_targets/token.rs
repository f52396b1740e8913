//! An invite token pasted into `/add`: whatever the text, `read_token`
//! returns a verified profile or a clear error, and never panics.
#![no_main]

// Shared by all targets; each uses a part.
#[allow(dead_code)]
#[path = "../keys.rs"]
mod keys;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((invite, profile)) = kircd::crypto::profile::read_token(&text, keys::NOW_MS) {
        // Accepted means complete: a secret, a future expiry, a profile that
        // speaks for its own key.
        assert_eq!(invite.secret.len(), 16);
        assert!(invite.expires_at_unix_ms > keys::NOW_MS);
        assert_eq!(
            profile.actor_id,
            kircd::crypto::identity::ActorId::of(&profile.signing_key)
        );
    }
});
