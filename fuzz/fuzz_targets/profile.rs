//! A signed profile, as contact requests, acceptances and tokens carry it.
#![no_main]

use kirc_proto::wire::v1 as wire;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = wire::SignedProfile::decode(data) else {
        return;
    };
    if let Ok(profile) = kircd::crypto::profile::verify_profile(&signed) {
        assert_eq!(
            profile.actor_id,
            kircd::crypto::identity::ActorId::of(&profile.signing_key)
        );
        let access = profile
            .profile
            .kafka
            .as_ref()
            .expect("verified profiles have access");
        assert!(!access.bootstrap_servers.is_empty());
    }
});
