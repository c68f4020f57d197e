//! Bearer tokens for the waiting line, sealed.
//!
//! A token is `base64url(version | nonce | sealed(seq | user_id | issued_at
//! | 0) | tag)`: the row's fields encrypted and authenticated with
//! XChaCha20-Poly1305 under a key derived from the server's secret, with the
//! row's random 16-byte `nonce` as the AEAD nonce. The text reveals nothing
//! (no user id, number or time can be read from it: a screenshot of a token
//! gives away only the token), and any change to it fails the tag. The
//! database keeps the row's fields and the nonce but never the key, so a copy
//! of the token table cannot mint tokens, and the same row always derives the
//! same token. Checking a token costs one decryption of 33 bytes and no I/O;
//! since it carries everything a WAITING token's answer needs, reading one in
//! line costs only the line's counters.
//!
//! Version 1 tokens (readable body and a MAC) are not accepted: a token from
//! before the upgrade is `UNAUTHENTICATED`, and its holder asks for a new one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chrono::{DateTime, NaiveDateTime};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

const VERSION: u8 = 2;
/// Binds a token to its purpose and version (the AEAD's associated data).
const DOMAIN: &[u8] = b"ticket-reservation/queue-token/v2";
/// What the key is derived for, so that the secret's other uses never share it.
const KEY_LABEL: &[u8] = b"ticket-reservation/queue-token/v2/key";
const NONCE_LEN: usize = 16;
/// seq, user id, issued_at, and one zero byte that makes the token 66 bytes.
const PLAIN_LEN: usize = 8 + 16 + 8 + 1;
const TAG_LEN: usize = 16;
/// 66 bytes: a multiple of three, so the base64 text has no padding bits a
/// changed character could hide in.
const TOKEN_LEN: usize = 1 + NONCE_LEN + PLAIN_LEN + TAG_LEN;

/// What a verified token says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    pub seq: u64,
    pub user_id: Uuid,
    /// When the token was issued, to the microsecond (as stored).
    pub issued_at: NaiveDateTime,
    pub nonce: [u8; 16],
}

#[derive(Clone)]
pub struct TokenSealer {
    cipher: XChaCha20Poly1305,
}

impl TokenSealer {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&derive_key(secret)),
        }
    }

    pub fn seal(&self, claims: &TokenClaims) -> String {
        let plain = encode_plain(claims);
        let payload = Payload {
            msg: &plain,
            aad: DOMAIN,
        };
        // Encryption fails only past the cipher's length limit (256 GiB).
        let Ok(sealed) = self.cipher.encrypt(&xnonce(&claims.nonce), payload) else {
            unreachable!("33 bytes are within any AEAD's limit")
        };
        let mut token = [0u8; TOKEN_LEN];
        token[0] = VERSION;
        token[1..=NONCE_LEN].copy_from_slice(&claims.nonce);
        token[1 + NONCE_LEN..].copy_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The claims of a token this server sealed, or `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        if token.len() != TOKEN_TEXT_LEN {
            return None; // before decoding anything of arbitrary length
        }
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[1..=NONCE_LEN]);
        let payload = Payload {
            msg: &bytes[1 + NONCE_LEN..],
            aad: DOMAIN,
        };
        let plain = self.cipher.decrypt(&xnonce(&nonce), payload).ok()?;
        decode_plain(&plain, nonce)
    }
}

/// The base64 length of a token (no padding: 66 bytes are 88 characters).
const TOKEN_TEXT_LEN: usize = TOKEN_LEN / 3 * 4;

/// A 256-bit key from the secret of any length: HMAC-SHA256 keyed by the
/// secret over a label of this use.
fn derive_key(secret: &[u8]) -> Key {
    // HMAC takes keys of any length; this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        unreachable!("HMAC accepts any key length")
    };
    mac.update(KEY_LABEL);
    mac.finalize().into_bytes()
}

/// XChaCha20's 24-byte nonce: the row's 16 random bytes, then zeros. Random
/// 16-byte nonces repeat with odds of about 2^-64 after 2^32 tokens.
fn xnonce(nonce: &[u8; NONCE_LEN]) -> XNonce {
    let mut extended = [0u8; 24];
    extended[..NONCE_LEN].copy_from_slice(nonce);
    extended.into()
}

fn encode_plain(claims: &TokenClaims) -> [u8; PLAIN_LEN] {
    let mut plain = [0u8; PLAIN_LEN];
    plain[0..8].copy_from_slice(&claims.seq.to_be_bytes());
    plain[8..24].copy_from_slice(claims.user_id.as_bytes());
    let micros = claims.issued_at.and_utc().timestamp_micros();
    plain[24..32].copy_from_slice(&micros.to_be_bytes());
    plain
}

/// The fields of a plaintext whose tag checked out; `None` only if it is
/// not one this module sealed (a wrong length, a set last byte, an instant
/// out of chrono's range), which an authentic token never is.
fn decode_plain(plain: &[u8], nonce: [u8; NONCE_LEN]) -> Option<TokenClaims> {
    if plain.len() != PLAIN_LEN || plain[PLAIN_LEN - 1] != 0 {
        return None;
    }
    let seq = u64::from_be_bytes(plain[0..8].try_into().ok()?);
    let user_id = Uuid::from_bytes(plain[8..24].try_into().ok()?);
    let micros = i64::from_be_bytes(plain[24..32].try_into().ok()?);
    let issued_at = DateTime::from_timestamp_micros(micros)?.naive_utc();
    Some(TokenClaims {
        seq,
        user_id,
        issued_at,
        nonce,
    })
}

pub fn random_nonce() -> [u8; 16] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            seq: 42,
            user_id: Uuid::new_v4(),
            issued_at: crate::clock::now(),
            nonce: random_nonce(),
        }
    }

    #[test]
    fn a_sealed_token_opens_to_its_claims() {
        let sealer = TokenSealer::new(b"0123456789abcdef0123456789abcdef");
        let claims = claims();
        let token = sealer.seal(&claims);
        assert_eq!(token.len(), 88);
        assert_eq!(sealer.verify(&token), Some(claims));
        assert_eq!(
            sealer.seal(&claims),
            token,
            "one row always derives one token"
        );
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let sealer = TokenSealer::new(b"0123456789abcdef0123456789abcdef");
        let token = sealer.seal(&claims());
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (index, original) in token.char_indices() {
            for replacement in alphabet.chars().filter(|c| *c != original) {
                let mut changed = token.clone();
                changed.replace_range(index..=index, &replacement.to_string());
                assert_eq!(sealer.verify(&changed), None, "changed at {index}");
            }
        }
    }

    #[test]
    fn another_servers_secret_and_garbage_are_rejected() {
        let token = TokenSealer::new(b"one secret one secret one secret").seal(&claims());
        let other = TokenSealer::new(b"another secret another secret !!");
        assert_eq!(other.verify(&token), None);
        assert_eq!(other.verify(""), None);
        assert_eq!(other.verify("not a token"), None);
        assert_eq!(other.verify(&token[..40]), None);
    }

    #[test]
    fn a_token_reveals_nothing_of_its_row() {
        let sealer = TokenSealer::new(b"0123456789abcdef0123456789abcdef");
        let claims = claims();
        let bytes = URL_SAFE_NO_PAD.decode(sealer.seal(&claims)).unwrap();
        let user = claims.user_id.as_bytes();
        let seq = claims.seq.to_be_bytes();
        let micros = claims.issued_at.and_utc().timestamp_micros().to_be_bytes();
        for (what, needle) in [
            ("user id", &user[..]),
            ("seq", &seq[2..]),
            ("time", &micros[..5]),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "the {what} can be read from the token"
            );
        }
        // Two tokens of one user share nothing but the version byte's place.
        let other = TokenClaims {
            seq: claims.seq + 1,
            nonce: random_nonce(),
            ..claims
        };
        let second = URL_SAFE_NO_PAD.decode(sealer.seal(&other)).unwrap();
        let same = bytes[1..]
            .iter()
            .zip(&second[1..])
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 10, "{same} of 65 bytes alike");
    }

    #[test]
    fn a_version_one_token_is_not_accepted() {
        // The layout of the readable tokens of the first build.
        let mut old = [0u8; 66];
        old[0] = 1;
        let sealer = TokenSealer::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(sealer.verify(&URL_SAFE_NO_PAD.encode(old)), None);
    }
}
