//! `AUTH_MODE=jwt`: an account acts only for its owner. Tests sign their
//! own JWTs, as the site's sign-in would, and try every refusal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::TestServer;
use common::fixtures::sql_number;
use common::ws::{TRANSPORT_WS, WsClient};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use ticket_reservation::config::{AuthMode, TokenSecret};

const SITE_KEY: &str = "the-sites-own-sign-in-key-of-32-chars-or-more";
const ISSUER: &str = "https://tickets.example.com";
const AUDIENCE: &str = "ticket-reservation";
const REGISTER: &str = "mutation { registerUser(name: \"Fan\") { id name balance } }";
const ISSUE: &str = "mutation($id: UUID!) { issueToken(userId: $id) { token status } }";
const CHARGE: &str =
    "mutation($id: UUID!) { chargeBalance(userId: $id, amount: \"10.00\") { balance } }";
const USER: &str = "query($id: UUID!) { user(id: $id) { id balance } }";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims as the site would sign them for `subject`, valid for an hour.
fn claims(subject: &str) -> Value {
    json!({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 3600, "iat": now()})
}

fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn jwt(subject: &str) -> String {
    sign(&claims(subject), SITE_KEY)
}

async fn jwt_server() -> TestServer {
    TestServer::with_settings(|config| {
        config.auth_mode = AuthMode::Jwt;
        config.auth_jwt_secret = Some(TokenSecret(SITE_KEY.as_bytes().to_vec()));
        config.auth_jwt_issuer = Some(ISSUER.to_owned());
        config.auth_jwt_audience = Some(AUDIENCE.to_owned());
        config.token_secret = Some(TokenSecret(
            b"queue-tokens-secret-of-32-chars-at-least".to_vec(),
        ));
    })
    .await
}

async fn register(server: &TestServer, jwt: &str) -> String {
    let answer = server.gql(REGISTER, json!({}), Some(jwt)).await;
    answer.data("registerUser")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_jwt_is_unauthenticated_and_says_which_check_failed() {
    let server = jwt_server().await;
    let user = register(&server, &jwt("alice")).await;
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 120);
    let mut early = claims("alice");
    early["nbf"] = json!(now() + 600);
    let mut foreign_issuer = claims("alice");
    foreign_issuer["iss"] = json!("https://evil.example.com");
    let mut other_audience = claims("alice");
    other_audience["aud"] = json!("another-api");
    let mut no_subject = claims("alice");
    no_subject.as_object_mut().unwrap().remove("sub");
    let mut no_expiry = claims("alice");
    no_expiry.as_object_mut().unwrap().remove("exp");
    let cases = [
        ("garbage", "not-a-jwt".to_owned(), "well-formed"),
        ("a queue token", "A".repeat(88), "well-formed"),
        (
            "another key",
            sign(&claims("alice"), "an-attackers-key-of-thirty-two-chars!!"),
            "signature",
        ),
        ("expired", sign(&expired, SITE_KEY), "expired"),
        ("not yet valid", sign(&early, SITE_KEY), "not valid yet"),
        ("another issuer", sign(&foreign_issuer, SITE_KEY), "issuer"),
        (
            "another audience",
            sign(&other_audience, SITE_KEY),
            "audience",
        ),
        ("no sub", sign(&no_subject, SITE_KEY), "sub and exp"),
        ("no exp", sign(&no_expiry, SITE_KEY), "sub and exp"),
    ];
    for (what, bearer, says) in &cases {
        for (query, variables) in [
            (ISSUE, json!({"id": user})),
            (CHARGE, json!({"id": user})),
            (USER, json!({"id": user})),
            ("{ me { id } }", json!({})),
            (REGISTER, json!({})),
        ] {
            let answer = server.gql(query, variables, Some(bearer)).await;
            assert_eq!(
                answer.code().as_deref(),
                Some("UNAUTHENTICATED"),
                "{what}: {}",
                answer.0
            );
            let message = answer.message();
            assert!(message.contains(says), "{what}: {message}");
            assert!(
                !message.contains(bearer.as_str()),
                "{what}: the token is echoed"
            );
        }
    }
    // No header at all.
    let answer = server.gql(ISSUE, json!({"id": user}), None).await;
    assert_eq!(answer.code().as_deref(), Some("UNAUTHENTICATED"));
    assert!(answer.message().contains("Authorization: Bearer <JWT>"));
    // Nothing changed: alice's balance is untouched, and she has no token.
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM queue_tokens").await,
        0
    );
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM balance_entries").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_acts_only_for_itself() {
    let server = jwt_server().await;
    let (alice_jwt, bob_jwt) = (jwt("alice"), jwt("bob"));
    let alice = register(&server, &alice_jwt).await;
    let bob = register(&server, &bob_jwt).await;
    assert_ne!(alice, bob);

    for (query, variables) in [
        (ISSUE, json!({"id": bob})),
        (CHARGE, json!({"id": bob})),
        (USER, json!({"id": bob})),
        // An id that exists nowhere is refused the same way: FORBIDDEN
        // tells a stranger nothing about which ids exist.
        (USER, json!({"id": uuid::Uuid::new_v4()})),
    ] {
        let answer = server.gql(query, variables, Some(&alice_jwt)).await;
        assert_eq!(answer.code().as_deref(), Some("FORBIDDEN"), "{}", answer.0);
    }

    let charged = server
        .gql(CHARGE, json!({"id": alice}), Some(&alice_jwt))
        .await;
    assert_eq!(charged.data("chargeBalance")["balance"], "10.00");
    let issued = server
        .gql(ISSUE, json!({"id": alice}), Some(&alice_jwt))
        .await;
    assert_eq!(issued.data("issueToken")["status"], "ACTIVE");
    let me = server
        .gql("{ me { id balance } }", json!({}), Some(&alice_jwt))
        .await;
    assert_eq!(me.data("me")["id"], alice.as_str());
    assert_eq!(me.data("me")["balance"], "10.00");
    // Registering again answers the same user, unchanged.
    let again = server
        .gql(
            "mutation { registerUser(name: \"Someone Else\") { id name } }",
            json!({}),
            Some(&alice_jwt),
        )
        .await;
    assert_eq!(again.data("registerUser")["id"], alice.as_str());
    assert_eq!(again.data("registerUser")["name"], "Fan");
    // A subject with no user yet: me is null.
    let stranger = server
        .gql("{ me { id } }", json!({}), Some(&jwt("carol")))
        .await;
    assert!(stranger.0["errors"].is_null(), "{}", stranger.0);
    assert!(stranger.data("me").is_null());
    // Bob's balance was never touched.
    let bobs = server.gql(USER, json!({"id": bob}), Some(&bob_jwt)).await;
    assert_eq!(bobs.data("user")["balance"], "0.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_registrations_of_one_subject_make_one_user() {
    let server = std::sync::Arc::new(jwt_server().await);
    let bearer = jwt("dave");
    let ids = common::concurrently(50, |_| {
        let (server, bearer) = (std::sync::Arc::clone(&server), bearer.clone());
        async move { register(&server, &bearer).await }
    })
    .await;
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(
        sql_number(&server.db, "SELECT COUNT(*) FROM users").await,
        1
    );
    common::assert_invariants_hold(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_may_come_in_connection_init() {
    let server = jwt_server().await;
    let bearer = jwt("erin");
    let erin = register(&server, &bearer).await;

    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init(json!({"Authorization": format!("Bearer {bearer}")}))
        .await;
    ws.subscribe("me", "{ me { id } }", json!({})).await;
    let answer = ws.next().await.expect("an answer");
    assert_eq!(
        answer["payload"]["data"]["me"]["id"],
        erin.as_str(),
        "{answer}"
    );

    let mut anonymous = WsClient::connect(server.addr, TRANSPORT_WS).await;
    anonymous.init(json!({})).await;
    anonymous.subscribe("me", "{ me { id } }", json!({})).await;
    let answer = anonymous.next().await.expect("an answer");
    let code = &answer["payload"]["errors"][0]["extensions"]["code"];
    let code = if code.is_null() {
        &answer["payload"][0]["extensions"]["code"]
    } else {
        code
    };
    assert_eq!(code, "UNAUTHENTICATED", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_keys_are_checked_and_no_other_algorithm_passes() {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let private_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let key_file = std::env::temp_dir().join(format!("jwt-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&key_file, public_pem.as_bytes()).unwrap();
    let path = key_file.clone();
    let server = TestServer::with_settings(move |config| {
        config.auth_mode = AuthMode::Jwt;
        config.auth_jwt_public_key = Some(path);
        config.token_secret = Some(TokenSecret(
            b"queue-tokens-secret-of-32-chars-at-least".to_vec(),
        ));
    })
    .await;
    let claims = json!({"sub": "frank", "exp": now() + 600});
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let frank = register(&server, &es256).await;
    assert_eq!(frank.len(), 36);
    // HS256 keyed with the public key's own text: the classic confusion.
    let confused = sign(&claims, &public_pem);
    let answer = server.gql(REGISTER, json!({}), Some(&confused)).await;
    assert_eq!(answer.code().as_deref(), Some("UNAUTHENTICATED"));
    std::fs::remove_file(key_file).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_will_not_start_without_token_secret_and_open_mode_has_no_me() {
    let db = common::TestDb::new().await;
    let mut config = common::test_config(&db.url);
    config.auth_mode = AuthMode::Jwt;
    config.auth_jwt_secret = Some(TokenSecret(SITE_KEY.as_bytes().to_vec()));
    config.token_secret = None;
    assert!(ticket_reservation::AppState::start(config).await.is_err());

    let open = TestServer::start().await;
    let me = open.gql("{ me { id } }", json!({}), None).await;
    assert!(me.0["errors"].is_null(), "{}", me.0);
    assert!(me.data("me").is_null());
}

/// Fans new to this process (their users made elsewhere, so not in its
/// cache) look their subjects up in batches: 40 issue for themselves and
/// 40 for a neighbour at once, and each gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_unknown_subjects_answer_each_caller() {
    let server = jwt_server().await;
    let fans = 40;
    let rows: Vec<String> = (1..=fans)
        .map(|i| format!("(UNHEX('{i:032x}'), 'fan {i}', 0, UTC_TIMESTAMP(6), 'fan-{i}')"))
        .collect();
    common::fixtures::sql_execute(
        &server.db,
        &format!(
            "INSERT INTO users (id, name, balance, created_at, subject) VALUES {}",
            rows.join(",")
        ),
    )
    .await;
    let id = |i: usize| format!("{:08x}-0000-0000-0000-{:012x}", 0, i);
    let (url, http) = (server.url("/graphql"), server.http.clone());
    let answers = common::concurrently(2 * fans, move |n| {
        let (url, http) = (url.clone(), http.clone());
        let fan = n % fans + 1;
        let target = if n < fans { fan } else { fan % fans + 1 };
        let (jwt, user) = (jwt(&format!("fan-{fan}")), id(target));
        async move {
            let answer: Value = http
                .post(url)
                .bearer_auth(jwt)
                .json(&json!({"query": ISSUE, "variables": {"id": user}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (n < fans, answer)
        }
    })
    .await;
    for (own, answer) in answers {
        if own {
            assert!(
                answer["data"]["issueToken"]["token"].is_string(),
                "{answer}"
            );
        } else {
            assert_eq!(
                answer["errors"][0]["extensions"]["code"], "FORBIDDEN",
                "{answer}"
            );
        }
    }
    let tokens =
        common::fixtures::sql_number(&server.db, "SELECT COUNT(*) FROM queue_tokens").await;
    assert_eq!(
        tokens, fans as i64,
        "one token per fan, none for a neighbour"
    );
}
