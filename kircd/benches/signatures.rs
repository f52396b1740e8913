//! The inbox's signature check per message, three ways, in one run on one
//! core: each signature alone (strict, as a lone record is checked),
//! ed25519-dalek's `verify_batch`, and kircd's batch, which adds up the
//! terms of each key before the one multiplication. Groups of 256 envelopes
//! as the inbox forms them (`VERIFY_GROUP`), from one sender and from 16.
//!
//! `cargo bench -p kircd --bench signatures` (no stack needed).

use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use kircd::crypto::signatures::{Signed, verify_batch};
use rand_core::OsRng;

/// The inbox's group size; `KIRC_BENCH_GROUP` tries another.
const GROUP: usize = 256;

fn main() {
    let rounds: usize = std::env::var("KIRC_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let group: usize = std::env::var("KIRC_BENCH_GROUP")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(GROUP);
    println!(
        "signature check per message, groups of {group} envelopes of ~220 bytes, {rounds} groups each, one core"
    );
    println!(
        "| senders in a group | one by one (strict) p50 / p99 | ed25519-dalek verify_batch | kircd's batch | kircd ÷ one by one | kircd ÷ ed25519-dalek |"
    );
    println!("|---|---|---|---|---|---|");
    for senders in [1, 16] {
        let keys: Vec<SigningKey> = (0..senders)
            .map(|_| SigningKey::generate(&mut OsRng))
            .collect();
        let items: Vec<(Vec<u8>, Signature, VerifyingKey)> = (0..group)
            .map(|index| {
                let key = &keys[index % senders];
                // The signed input of a chat envelope: header fields and a
                // ciphertext of about this size.
                let message = vec![index as u8; 220];
                let signature = key.sign(&message);
                (message, signature, key.verifying_key())
            })
            .collect();
        let alone = per_message(rounds, group, || {
            for (message, signature, key) in &items {
                assert!(key.verify_strict(message, signature).is_ok());
            }
        });
        let messages: Vec<&[u8]> = items
            .iter()
            .map(|(message, _, _)| message.as_slice())
            .collect();
        let signatures: Vec<Signature> = items.iter().map(|(_, signature, _)| *signature).collect();
        let keys_of: Vec<VerifyingKey> = items.iter().map(|(_, _, key)| *key).collect();
        let dalek = per_message(rounds, group, || {
            assert!(ed25519_dalek::verify_batch(&messages, &signatures, &keys_of).is_ok());
        });
        let signature_bytes: Vec<[u8; 64]> = signatures.iter().map(Signature::to_bytes).collect();
        let batch: Vec<Signed<'_>> = items
            .iter()
            .zip(&signature_bytes)
            .map(|((message, _, key), signature)| Signed {
                message,
                signature,
                key,
            })
            .collect();
        let ours = per_message(rounds, group, || assert!(verify_batch(&batch)));
        println!(
            "| {senders} | {:.2} / {:.2} µs | {:.2} / {:.2} µs | {:.2} / {:.2} µs | {:.2}× | {:.2}× |",
            alone.0,
            alone.1,
            dalek.0,
            dalek.1,
            ours.0,
            ours.1,
            ours.0 / alone.0,
            ours.0 / dalek.0,
        );
    }
}

/// p50 and p99 over the rounds of one group's time, per message, in µs.
fn per_message(rounds: usize, size: usize, mut group: impl FnMut()) -> (f64, f64) {
    group();
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            group();
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |quantile: f64| {
        let index = ((times.len() as f64 * quantile).ceil() as usize).clamp(1, times.len()) - 1;
        times[index].as_secs_f64() * 1e6 / size as f64
    };
    (at(0.5), at(0.99))
}
