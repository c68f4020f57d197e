//! Bearer tokens for the waiting line.
//!
//! A token is `base64url(version | seq | user_id | issued_at | nonce | mac)`
//! where `mac` is HMAC-SHA256 under the server's secret, truncated to 136
//! bits. The database keeps the row's fields and the random `nonce` but never
//! the MAC, so a copy of the token table cannot be replayed, and the same row
//! always derives the same token. Checking a token costs one HMAC and no I/O;
//! since it carries everything a WAITING token's answer needs, reading one in
//! line costs only the line's counters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"ticket-reservation/queue-token/v1";
const MAC_LEN: usize = 17;
const BODY_LEN: usize = 1 + 8 + 16 + 8 + 16;
/// 66 bytes: a multiple of three, so the base64 text has no padding bits a
/// changed character could hide in.
const TOKEN_LEN: usize = BODY_LEN + MAC_LEN;

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
pub struct TokenSigner {
    key: HmacSha256,
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length; this cannot fail.
        let key = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Self { key }
    }

    pub fn sign(&self, claims: &TokenClaims) -> String {
        let body = encode_body(claims);
        let mac = self.mac(&body);
        let mut token = [0u8; TOKEN_LEN];
        token[..BODY_LEN].copy_from_slice(&body);
        token[BODY_LEN..].copy_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The claims of a token this server signed, or `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
            return None;
        }
        let (body, mac) = bytes.split_at(BODY_LEN);
        let mut check = self.key.clone();
        check.update(DOMAIN);
        check.update(body);
        check.verify_truncated_left(mac).ok()?;
        decode_body(body)
    }

    fn mac(&self, body: &[u8]) -> [u8; 32] {
        let mut mac = self.key.clone();
        mac.update(DOMAIN);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

fn encode_body(claims: &TokenClaims) -> [u8; BODY_LEN] {
    let mut body = [0u8; BODY_LEN];
    body[0] = VERSION;
    body[1..9].copy_from_slice(&claims.seq.to_be_bytes());
    body[9..25].copy_from_slice(claims.user_id.as_bytes());
    let micros = claims.issued_at.and_utc().timestamp_micros();
    body[25..33].copy_from_slice(&micros.to_be_bytes());
    body[33..49].copy_from_slice(&claims.nonce);
    body
}

/// The fields of a body whose MAC checked out; `None` only if the instant
/// is out of chrono's range, which a signed body never is.
fn decode_body(body: &[u8]) -> Option<TokenClaims> {
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&body[1..9]);
    let mut user = [0u8; 16];
    user.copy_from_slice(&body[9..25]);
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&body[25..33]);
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&body[33..49]);
    let issued_at = DateTime::from_timestamp_micros(i64::from_be_bytes(micros))?.naive_utc();
    Some(TokenClaims {
        seq: u64::from_be_bytes(seq),
        user_id: Uuid::from_bytes(user),
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
    fn a_signed_token_verifies_to_its_claims() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let claims = claims();
        let token = signer.sign(&claims);
        assert_eq!(token.len(), 88);
        assert_eq!(signer.verify(&token), Some(claims));
        assert_eq!(
            signer.sign(&claims),
            token,
            "one row always derives one token"
        );
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.sign(&claims());
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (index, original) in token.char_indices() {
            for replacement in alphabet.chars().filter(|c| *c != original) {
                let mut changed = token.clone();
                changed.replace_range(index..=index, &replacement.to_string());
                assert_eq!(signer.verify(&changed), None, "changed at {index}");
            }
        }
    }

    #[test]
    fn another_servers_secret_and_garbage_are_rejected() {
        let token = TokenSigner::new(b"one secret one secret one secret").sign(&claims());
        let other = TokenSigner::new(b"another secret another secret !!");
        assert_eq!(other.verify(&token), None);
        assert_eq!(other.verify(""), None);
        assert_eq!(other.verify("not a token"), None);
        assert_eq!(other.verify(&token[..40]), None);
    }
}
