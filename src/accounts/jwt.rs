//! Checking the site's JWTs: the signature with the one key and algorithm
//! configured (never the algorithm a token names), `exp` required, `nbf`,
//! `iss` and `aud` honoured, with a small leeway for clocks.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;
use crate::error::{AppError, AppResult};

/// How far apart the site's clock and ours may be, in seconds, for `exp`
/// and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
/// The longest subject kept (the column's width).
pub const MAX_SUBJECT_CHARS: usize = 255;

/// The claims this server reads; the rest of a JWT is the site's business.
#[derive(Deserialize)]
struct Claims {
    /// Optional here so that a JWT without it is told so, not that it is
    /// malformed; `subject` refuses it.
    #[serde(default)]
    sub: Option<String>,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier(..)")
    }
}

impl JwtVerifier {
    /// The verifier of `AUTH_JWT_SECRET` or `AUTH_JWT_PUBLIC_KEY` (exactly
    /// one must be given), with the issuer and audience to demand.
    pub fn from_config(config: &Config) -> AppResult<Self> {
        let (key, algorithm) = match (&config.auth_jwt_secret, &config.auth_jwt_public_key) {
            (Some(secret), None) => (DecodingKey::from_secret(&secret.0), Algorithm::HS256),
            (None, Some(path)) => public_key(path)?,
            _ => {
                return Err(AppError::internal(
                    "AUTH_MODE=jwt needs exactly one of AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY",
                ));
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &config.auth_jwt_issuer {
            validation.set_issuer(&[issuer]);
        }
        match &config.auth_jwt_audience {
            Some(audience) => validation.set_audience(&[audience]),
            // A token naming an audience is fine when none is demanded.
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The subject of a JWT that passes every check; UNAUTHENTICATED saying
    /// which check failed otherwise. The token itself is never echoed.
    pub fn subject(&self, jwt: &str) -> AppResult<String> {
        let decoded = jsonwebtoken::decode::<Claims>(jwt, &self.key, &self.validation)
            .map_err(|error| AppError::Unauthenticated(why_refused(error.kind())))?;
        let subject = decoded.claims.sub.ok_or(AppError::Unauthenticated(
            "the JWT lacks a required claim: sub and exp",
        ))?;
        if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(AppError::Unauthenticated(
                "the JWT's sub is empty or longer than 255 characters",
            ));
        }
        Ok(subject)
    }
}

/// An RSA key means RS256, an EC key ES256.
fn public_key(path: &std::path::Path) -> AppResult<(DecodingKey, Algorithm)> {
    let pem = std::fs::read(path).map_err(|error| {
        AppError::internal(format!(
            "cannot read AUTH_JWT_PUBLIC_KEY {}: {error}",
            path.display()
        ))
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(&pem)
        .map(|key| (key, Algorithm::ES256))
        .map_err(|_| {
            AppError::internal(format!(
                "AUTH_JWT_PUBLIC_KEY {} is not a PEM RSA or EC public key",
                path.display()
            ))
        })
}

fn why_refused(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the JWT has expired (exp)",
        ErrorKind::ImmatureSignature => "the JWT is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "the JWT's signature does not match this server's key",
        ErrorKind::InvalidAudience => "the JWT is meant for another audience (aud)",
        ErrorKind::InvalidIssuer => "the JWT comes from another issuer (iss)",
        ErrorKind::MissingRequiredClaim(_) => "the JWT lacks a required claim: sub and exp",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the JWT is signed with an algorithm this server does not accept"
        }
        _ => "the bearer is not a well-formed JWT",
    }
}
