//! Organizer access: the keys of `ORGANIZER_KEYS`, sent as a bearer.

use subtle::{Choice, ConstantTimeEq};

use crate::config::OrganizerKeys;
use crate::error::{AppError, AppResult};

/// Passes a bearer that is one of the keys. No bearer is UNAUTHENTICATED;
/// any other (a queue token, a JWT, a wrong key) is FORBIDDEN.
pub fn check_organizer(keys: &OrganizerKeys, bearer: Option<&str>) -> AppResult<()> {
    let Some(offered) = bearer else {
        return Err(AppError::Unauthenticated(
            "organizer operations need 'Authorization: Bearer <organizer key>'",
        ));
    };
    // Every key is compared in full, whichever matches: the time taken
    // tells a caller nothing about how close a guess came.
    let matched = keys.0.iter().fold(Choice::from(0), |matched, key| {
        matched | offered.as_bytes().ct_eq(&key.0)
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AppError::Forbidden("this operation needs an organizer key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenSecret;

    fn keys() -> OrganizerKeys {
        OrganizerKeys(vec![
            TokenSecret(b"first-organizer-key-0123456789-abc".to_vec()),
            TokenSecret(b"second-organizer-key-0123456789-ab".to_vec()),
        ])
    }

    #[test]
    fn only_a_listed_key_passes() {
        assert!(check_organizer(&keys(), Some("second-organizer-key-0123456789-ab")).is_ok());
        let codes = [
            check_organizer(&keys(), None),
            check_organizer(&keys(), Some("second-organizer-key-0123456789-aX")),
            check_organizer(&keys(), Some("second")),
            check_organizer(&OrganizerKeys::default(), Some("anything")),
        ]
        .map(|result| result.err().map(|error| error.code()));
        assert_eq!(
            codes,
            [
                Some("UNAUTHENTICATED"),
                Some("FORBIDDEN"),
                Some("FORBIDDEN"),
                Some("FORBIDDEN")
            ]
        );
    }
}
