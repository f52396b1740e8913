//! Ed25519 signatures of many messages checked in one equation.
//!
//! For signatures (R_i, s_i) by keys A_i over messages M_i, with
//! h_i = SHA-512(R_i ‖ A_i ‖ M_i) and random 128-bit weights z_i, every
//! signature satisfies s_i·B = R_i + h_i·A_i only if (with overwhelming
//! probability over the weights)
//!
//! (−Σ z_i·s_i)·B + Σ z_i·R_i + Σ (z_i·h_i)·A_i = 0,
//!
//! one multi-scalar multiplication. ed25519-dalek's `verify_batch` gives
//! each signature its own A_i point in it, 2n + 1 points for n signatures.
//! An inbox batch is signed by a few contacts, so here the terms of each key
//! are added up first — Σ over its signatures of (z_i·h_i)·A equals
//! (Σ z_i·h_i)·A — and the multiplication has n + k + 1 points for k keys:
//! about half the work for a batch from one sender. The equation is the
//! same, and so is what it proves.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};

/// One signature to check: the signed bytes, the 64 signature bytes and the
/// key that must have made it.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub message: &'a [u8],
    pub signature: &'a [u8],
    pub key: &'a VerifyingKey,
}

/// `true` if every signature is valid under the cofactorless equation
/// s·B = R + h·A. `false` if one at least may not be (or the weights could
/// not be drawn): check them one by one to find which. Weak keys (small
/// order, which let anyone sign) always give `false`, so that the strict
/// one-by-one check, which refuses them, decides.
pub fn verify_batch(batch: &[Signed<'_>]) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut weights = vec![0u8; 16 * batch.len()];
    if OsRng.try_fill_bytes(&mut weights).is_err() {
        return false;
    }
    let mut base = Scalar::ZERO;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(batch.len() + 2);
    let mut points: Vec<Option<EdwardsPoint>> = Vec::with_capacity(batch.len() + 2);
    // Each distinct key's summed coefficient, and its point.
    let mut key_terms: Vec<(Scalar, EdwardsPoint)> = Vec::new();
    let mut key_index: HashMap<[u8; 32], usize> = HashMap::new();
    for (signed, weight) in batch.iter().zip(weights.chunks_exact(16)) {
        let Ok(signature) = Signature::from_slice(signed.signature) else {
            return false;
        };
        let r_bytes = *signature.r_bytes();
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
        else {
            return false;
        };
        if signed.key.is_weak() {
            return false;
        }
        let hram = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r_bytes)
                .chain_update(signed.key.as_bytes())
                .chain_update(signed.message)
                .finalize()
                .into(),
        );
        // `chunks_exact(16)` gives 16 bytes.
        let mut weight_bytes = [0u8; 16];
        weight_bytes.copy_from_slice(weight);
        let z = Scalar::from(u128::from_le_bytes(weight_bytes));
        base -= z * s;
        scalars.push(z);
        points.push(CompressedEdwardsY(r_bytes).decompress());
        let index = *key_index.entry(signed.key.to_bytes()).or_insert_with(|| {
            key_terms.push((Scalar::ZERO, signed.key.to_edwards()));
            key_terms.len() - 1
        });
        key_terms[index].0 += z * hram;
    }
    scalars.push(base);
    points.push(Some(ED25519_BASEPOINT_POINT));
    for (scalar, point) in key_terms {
        scalars.push(scalar);
        points.push(Some(point));
    }
    // A point that does not decompress makes the sum `None`.
    EdwardsPoint::optional_multiscalar_mul(scalars, points).is_some_and(|sum| sum.is_identity())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn signed_by(keys: &[SigningKey], count: usize) -> Vec<(Vec<u8>, [u8; 64], VerifyingKey)> {
        (0..count)
            .map(|index| {
                let key = &keys[index % keys.len()];
                let message = format!("message {index}").into_bytes();
                let signature = key.sign(&message).to_bytes();
                (message, signature, key.verifying_key())
            })
            .collect()
    }

    fn batch(items: &[(Vec<u8>, [u8; 64], VerifyingKey)]) -> Vec<Signed<'_>> {
        items
            .iter()
            .map(|(message, signature, key)| Signed {
                message,
                signature,
                key,
            })
            .collect()
    }

    fn keys(count: usize) -> Vec<SigningKey> {
        (0..count)
            .map(|_| SigningKey::generate(&mut OsRng))
            .collect()
    }

    #[test]
    fn valid_signatures_pass_whatever_the_mix_of_keys() {
        for (signers, count) in [(1, 1), (1, 300), (3, 300), (300, 300)] {
            let items = signed_by(&keys(signers), count);
            assert!(verify_batch(&batch(&items)), "{signers} keys, {count}");
        }
        assert!(verify_batch(&[]));
    }

    #[test]
    fn any_bad_signature_fails_the_batch() {
        let signers = keys(2);
        let items = signed_by(&signers, 64);
        for victim in [0, 31, 63] {
            // Another message, another signature, another key, a signature
            // moved to another message.
            let mut altered = items.clone();
            altered[victim].0.push(b'!');
            assert!(!verify_batch(&batch(&altered)));
            let mut altered = items.clone();
            altered[victim].1[40] ^= 1;
            assert!(!verify_batch(&batch(&altered)));
            let mut altered = items.clone();
            altered[victim].2 = keys(1)[0].verifying_key();
            assert!(!verify_batch(&batch(&altered)));
            let mut altered = items.clone();
            altered[victim].1 = altered[(victim + 1) % 64].1;
            assert!(!verify_batch(&batch(&altered)));
        }
    }

    #[test]
    fn two_signatures_swapped_between_keys_fail() {
        // The summed key terms must still tie each signature to its own
        // key: signatures by one key listed under the other do not pass.
        let signers = keys(2);
        let mut items = signed_by(&signers, 4);
        let first = items[0].2;
        items[0].2 = items[1].2;
        items[1].2 = first;
        assert!(!verify_batch(&batch(&items)));
    }

    #[test]
    fn malformed_parts_fail() {
        let items = signed_by(&keys(1), 3);
        // A non-canonical s (s + the group order's high bits).
        let mut altered = items.clone();
        altered[1].1[63] |= 0xf0;
        assert!(!verify_batch(&batch(&altered)));
        // An R that is not a point.
        let mut altered = items.clone();
        altered[2].1[..32].copy_from_slice(&[0xff; 32]);
        assert!(!verify_batch(&batch(&altered)));
        // A truncated signature.
        let short = [Signed {
            message: &items[0].0,
            signature: &items[0].1[..63],
            key: &items[0].2,
        }];
        assert!(!verify_batch(&short));
    }

    #[test]
    fn agrees_with_one_by_one_checks() {
        let signers = keys(3);
        let items = signed_by(&signers, 50);
        for (message, signature, key) in &items {
            let signature = Signature::from_bytes(signature);
            assert!(key.verify_strict(message, &signature).is_ok());
        }
        assert!(verify_batch(&batch(&items)));
    }
}
