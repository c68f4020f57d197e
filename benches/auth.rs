//! What accounts cost: `issueToken`, polls and holds with `AUTH_MODE=jwt`
//! against `AUTH_MODE=open`, side by side in one run on one binary, and the
//! CPU of one JWT check and of one sealed queue token's check, in process.
//!
//! cargo bench --bench auth            (DATABASE_URL picks the server)

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::Sha256;
use support::*;
use ticket_reservation::accounts::jwt::JwtVerifier;
use ticket_reservation::config::{AuthMode, Config, TokenSecret};
use ticket_reservation::queue::token::{TokenClaims, TokenSealer};
use uuid::Uuid;

const CLIENTS: usize = 64;
/// Open and jwt take turns this many times; each figure is the median of
/// its rounds', so drift in the machine's speed cancels out.
const ROUNDS: usize = 3;
const USERS_PER_ROUND: usize = 2000;
const SEATS_PER_DATE: usize = 50;
const POLL_SECONDS: u64 = 3;
const JWT_SECRET: &str = "benchmark-jwt-secret-benchmark-jwt-secret";

const ISSUE: &str = "mutation($u: UUID!) { issueToken(userId: $u) { token } }";
const POLL: &str = "{ queueStatus { status position } }";
const HOLD: &str = "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id } }";

#[tokio::main]
async fn main() -> BenchResult<()> {
    checks_in_process()?;
    let open = Setup::start(AuthMode::Open).await?;
    let jwt = Setup::start(AuthMode::Jwt).await?;
    let (mut open_rounds, mut jwt_rounds) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        open_rounds.push(open.round(round).await?);
        jwt_rounds.push(jwt.round(round).await?);
    }
    println!();
    println!(
        "medians of {ROUNDS} rounds, {USERS_PER_ROUND} fans each, {CLIENTS} clients; server CPU per op"
    );
    println!(
        "{:<12} {:>12} {:>12} {:>8}   {:>14} {:>14}",
        "", "open /s", "jwt /s", "jwt/open", "open cpu µs", "jwt cpu µs"
    );
    for (index, name) in ["issueToken", "polls", "holds"].iter().enumerate() {
        let (open_rate, open_cpu) = medians(&open_rounds, index);
        let (jwt_rate, jwt_cpu) = medians(&jwt_rounds, index);
        println!(
            "{name:<12} {open_rate:>12.0} {jwt_rate:>12.0} {:>8.3}   {open_cpu:>14.0} {jwt_cpu:>14.0}",
            jwt_rate / open_rate
        );
    }
    open.stop().await?;
    jwt.stop().await?;
    Ok(())
}

/// One phase's rate and the server's CPU per operation, in µs.
type Figures = [(f64, f64); 3];

fn medians(rounds: &[Figures], index: usize) -> (f64, f64) {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    (
        median(rounds.iter().map(|r| r[index].0).collect()),
        median(rounds.iter().map(|r| r[index].1).collect()),
    )
}

/// A server in one mode on a database of its own, with its fans, their
/// JWTs (in jwt mode) and enough dates for each fan to hold one seat.
struct Setup {
    mode: AuthMode,
    db: BenchDb,
    server: ServerProcess,
    endpoint: Arc<String>,
    http: reqwest::Client,
    users: Arc<Vec<Uuid>>,
    jwts: Arc<Vec<String>>,
    dates: Arc<Vec<u64>>,
}

impl Setup {
    async fn start(mode: AuthMode) -> BenchResult<Self> {
        let db = BenchDb::create().await?;
        let fans = (USERS_PER_ROUND * ROUNDS) as u64;
        let users = insert_users(&db, 0, fans, "0").await?;
        db.execute("UPDATE users SET subject = CONCAT('fan-', LOWER(HEX(id)))")
            .await?;
        let dates = insert_concert(&db, fans / SEATS_PER_DATE as u64).await?;
        let jwts = match mode {
            AuthMode::Open => Vec::new(),
            AuthMode::Jwt => users.iter().map(|user| hs256_for(*user)).collect(),
        };
        let mut settings = vec![
            ("MAX_ACTIVE_TOKENS", "100000"),
            ("ACTIVE_TOKEN_SECONDS", "3600"),
            ("HOLD_SECONDS", "3600"),
        ];
        if mode == AuthMode::Jwt {
            settings.extend([("AUTH_MODE", "jwt"), ("AUTH_JWT_SECRET", JWT_SECRET)]);
        }
        let server = ServerProcess::start(&db.url, &settings)?;
        let endpoint = Arc::new(server.url("/graphql"));
        Ok(Self {
            mode,
            db,
            server,
            endpoint,
            http: http_client(),
            users: Arc::new(users),
            jwts: Arc::new(jwts),
            dates: Arc::new(dates),
        })
    }

    fn label(&self) -> &'static str {
        match self.mode {
            AuthMode::Open => "open",
            AuthMode::Jwt => "jwt",
        }
    }

    /// issueToken for the round's fans, then their polls, then a hold each.
    async fn round(&self, round: usize) -> BenchResult<Figures> {
        let first = round * USERS_PER_ROUND;
        let tokens = Arc::new(Mutex::new(vec![String::new(); USERS_PER_ROUND]));

        let meter = CpuMeter::start(&self.server);
        let issued = {
            let (http, endpoint, users, jwts) = self.shared();
            let tokens = Arc::clone(&tokens);
            run_phase(
                &format!("{} issueToken r{round}", self.label()),
                CLIENTS,
                USERS_PER_ROUND,
                move |i| {
                    let (http, endpoint, users, jwts, tokens) = (
                        http.clone(),
                        Arc::clone(&endpoint),
                        Arc::clone(&users),
                        Arc::clone(&jwts),
                        Arc::clone(&tokens),
                    );
                    async move {
                        let jwt = jwts.get(first + i).map(String::as_str);
                        let answer =
                            gql(&http, &endpoint, ISSUE, json!({"u": users[first + i]}), jwt)
                                .await
                                .expect("issueToken answers");
                        let token = answer["data"]["issueToken"]["token"]
                            .as_str()
                            .unwrap_or_else(|| panic!("no token: {answer}"));
                        tokens.lock().expect("tokens")[i] = token.to_owned();
                    }
                },
            )
            .await
        };
        let issue_cpu = meter.totals().server / issued.latencies.len() as f64 * 1e6;
        println!(
            "{}  {}",
            issued.report(),
            meter.per_op(issued.latencies.len())
        );

        let tokens = Arc::new(tokens.lock().expect("tokens").clone());
        let meter = CpuMeter::start(&self.server);
        let polled = {
            let (http, endpoint, tokens) = (
                self.http.clone(),
                Arc::clone(&self.endpoint),
                Arc::clone(&tokens),
            );
            run_for(
                &format!("{} polls r{round}", self.label()),
                CLIENTS,
                Duration::from_secs(POLL_SECONDS),
                move |i| {
                    let (http, endpoint, tokens) =
                        (http.clone(), Arc::clone(&endpoint), Arc::clone(&tokens));
                    async move {
                        let token = &tokens[i % tokens.len()];
                        let answer = gql(&http, &endpoint, POLL, json!({}), Some(token))
                            .await
                            .expect("queueStatus answers");
                        assert_eq!(
                            answer["data"]["queueStatus"]["status"], "ACTIVE",
                            "{answer}"
                        );
                    }
                },
            )
            .await
        };
        let poll_cpu = meter.totals().server / polled.latencies.len() as f64 * 1e6;
        println!(
            "{}  {}",
            polled.report(),
            meter.per_op(polled.latencies.len())
        );

        let meter = CpuMeter::start(&self.server);
        let held = {
            let (http, endpoint, dates) = (
                self.http.clone(),
                Arc::clone(&self.endpoint),
                Arc::clone(&self.dates),
            );
            let tokens = Arc::clone(&tokens);
            run_phase(
                &format!("{} holds r{round}", self.label()),
                CLIENTS,
                USERS_PER_ROUND,
                move |i| {
                    let (http, endpoint, dates, tokens) = (
                        http.clone(),
                        Arc::clone(&endpoint),
                        Arc::clone(&dates),
                        Arc::clone(&tokens),
                    );
                    async move {
                        let fan = first + i;
                        let date = dates[fan / SEATS_PER_DATE];
                        let seat = (fan % SEATS_PER_DATE) as i32 + 1;
                        let answer = gql(
                            &http,
                            &endpoint,
                            HOLD,
                            json!({"date": date.to_string(), "seat": seat}),
                            Some(&tokens[i]),
                        )
                        .await
                        .expect("holdSeat answers");
                        assert!(answer["errors"].is_null(), "{answer}");
                    }
                },
            )
            .await
        };
        let hold_cpu = meter.totals().server / held.latencies.len() as f64 * 1e6;
        println!("{}  {}", held.report(), meter.per_op(held.latencies.len()));
        Ok([
            (issued.per_second(), issue_cpu),
            (polled.per_second(), poll_cpu),
            (held.per_second(), hold_cpu),
        ])
    }

    #[allow(clippy::type_complexity, reason = "four handles for a phase")]
    fn shared(
        &self,
    ) -> (
        reqwest::Client,
        Arc<String>,
        Arc<Vec<Uuid>>,
        Arc<Vec<String>>,
    ) {
        (
            self.http.clone(),
            Arc::clone(&self.endpoint),
            Arc::clone(&self.users),
            Arc::clone(&self.jwts),
        )
    }

    async fn stop(self) -> BenchResult<()> {
        drop(self.server);
        self.db.drop_database().await
    }
}

fn hs256_for(user: Uuid) -> String {
    sign_hs256(&format!("fan-{}", user.simple()))
}

fn sign_hs256(subject: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(subject),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("a JWT")
}

fn claims(subject: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": subject, "exp": now + 3600, "iat": now})
}

/// How long `check` takes per call, in µs of this thread's time.
fn per_call(calls: u32, mut check: impl FnMut(u32)) -> f64 {
    let started = Instant::now();
    for i in 0..calls {
        check(i);
    }
    started.elapsed().as_secs_f64() / f64::from(calls) * 1e6
}

/// The CPU of one JWT check (HS256 and ES256) as the server makes it, and
/// of one sealed queue token's check against the HMAC of the token format
/// before it (a readable body and a MAC over it).
fn checks_in_process() -> BenchResult<()> {
    const CALLS: u32 = 20_000;
    let mut config = Config::from_args(["bench"])?;
    config.auth_mode = AuthMode::Jwt;
    config.auth_jwt_secret = Some(TokenSecret(JWT_SECRET.as_bytes().to_vec()));
    let hs256 = JwtVerifier::from_config(&config).map_err(|e| e.detail())?;
    let jwt = sign_hs256("fan-1");
    let hs256_us = per_call(CALLS, |_| {
        assert!(hs256.subject(std::hint::black_box(&jwt)).is_ok());
    });

    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let private_pem = secret.to_pkcs8_pem(LineEnding::LF)?;
    let public_pem = secret.public_key().to_public_key_pem(LineEnding::LF)?;
    let key_path = std::env::temp_dir().join(format!("bench-es256-{}.pem", std::process::id()));
    std::fs::write(&key_path, public_pem)?;
    config.auth_jwt_secret = None;
    config.auth_jwt_public_key = Some(key_path.clone());
    let es256 = JwtVerifier::from_config(&config).map_err(|e| e.detail())?;
    std::fs::remove_file(&key_path)?;
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("fan-1"),
        &EncodingKey::from_ec_pem(private_pem.as_bytes())?,
    )?;
    let es256_us = per_call(CALLS / 10, |_| {
        assert!(es256.subject(std::hint::black_box(&jwt)).is_ok());
    });

    let sealer = TokenSealer::new(TOKEN_SECRET.as_bytes());
    let token = sealer.seal(&TokenClaims {
        seq: 123_456,
        user_id: Uuid::new_v4(),
        issued_at: ticket_reservation::clock::now(),
        nonce: rand::random(),
    });
    let sealed_us = per_call(CALLS * 5, |_| {
        assert!(sealer.verify(std::hint::black_box(&token)).is_some());
    });
    // The older format: 41 readable bytes and an HMAC-SHA256 tag over them.
    let body = [7u8; 41];
    let mac_us = per_call(CALLS * 5, |_| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(TOKEN_SECRET.as_bytes()).expect("key");
        mac.update(std::hint::black_box(&body));
        std::hint::black_box(mac.finalize());
    });
    println!("in process, µs of CPU per check (one thread):");
    println!("  JWT HS256 {hs256_us:.2}   JWT ES256 {es256_us:.2}");
    println!(
        "  sealed queue token (XChaCha20-Poly1305) {sealed_us:.2}   HMAC-SHA256 token before it {mac_us:.2}"
    );
    Ok(())
}
