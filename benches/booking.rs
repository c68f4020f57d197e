//! Load generator for holds and payments, driving the real server binary
//! over HTTP, with the bare SQL of a hold straight to MariaDB for scale.
//!
//! cargo bench --bench booking            (DATABASE_URL picks the server)

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde_json::json;
use support::*;

const CLIENTS: usize = 64;
const HOT_FANS: usize = 1000;
/// Ours and bare SQL take turns this many times (`BOOKING_ROUNDS`, 3 unless
/// set); the ratio is the median of the rounds', so drift in the machine's
/// speed cancels out. More rounds narrow the median of the pollers' cost.
fn rounds() -> usize {
    static ROUNDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROUNDS.get_or_init(|| {
        std::env::var("BOOKING_ROUNDS")
            .ok()
            .and_then(|rounds| rounds.parse().ok())
            .filter(|rounds| *rounds > 0)
            .unwrap_or(3)
    })
}
const HOLDERS_PER_ROUND: usize = 2000;
const HOLDS_EACH: usize = 4;
const HOLDS_PER_ROUND: usize = HOLDERS_PER_ROUND * HOLDS_EACH;
fn holder_count() -> usize {
    HOLDERS_PER_ROUND * rounds()
}
fn hold_count() -> usize {
    HOLDS_PER_ROUND * rounds()
}
/// Each round also runs our holds again while organizers poll salesReport,
/// on seats and holders of their own (rounds `rounds()..` of the fixtures).
const REPORT_POLLERS: usize = 16;
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const ORGANIZER_KEY: &str = "benchmark-organizer-key-0123456789abcdef";
const REPORT: &str = "query($date: ID!) { salesReport(concertDateId: $date) { seatsSold seatsHeld seatsAvailable revenue } }";
const SEATS_PER_DATE: usize = 50;

const HOLD: &str = "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id } }";
const PAY: &str = "mutation($ids: [ID!]!) { pay(reservationIds: $ids) { id amount } }";

#[tokio::main]
async fn main() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    let dates_needed = (hold_count() / SEATS_PER_DATE) as u64;
    let hot_date = insert_concert(&db, 1).await?[0];
    let our_dates = Arc::new(insert_concert(&db, dates_needed * 2).await?);
    let bare_seats = Arc::new(seats_of(&db, &insert_concert(&db, dates_needed).await?).await?);
    let users = insert_users(&db, 0, (HOT_FANS + 2 * holder_count()) as u64, "1000000.00").await?;
    // The bare SQL's users pay for their holds too, from a charged balance.
    let bare_users = Arc::new(
        insert_users(
            &db,
            (HOT_FANS + 2 * holder_count()) as u64,
            holder_count() as u64,
            "1000000.00",
        )
        .await?,
    );
    let bare_reservations: Arc<Vec<Mutex<Vec<uuid::Uuid>>>> = Arc::new(
        (0..holder_count())
            .map(|_| Mutex::new(Vec::new()))
            .collect(),
    );
    let tokens = Arc::new(insert_tokens(&db, &users, 1, true).await?);
    let pool_size = std::env::var("BENCH_DATABASE_POOL_SIZE").unwrap_or_else(|_| "32".to_owned());
    let server = ServerProcess::start(
        &db.url,
        &[
            ("MAX_ACTIVE_TOKENS", "100000"),
            ("ACTIVE_TOKEN_SECONDS", "3600"),
            ("HOLD_SECONDS", "3600"),
            ("MAX_HOLDS_PER_USER", "4"),
            ("DATABASE_POOL_SIZE", &pool_size),
            ("ORGANIZER_KEYS", ORGANIZER_KEY),
        ],
    )?;
    let http = http_client();
    let endpoint = Arc::new(server.url("/graphql"));
    println!(
        "database {}; server pid {} with {pool_size} connections; {} ACTIVE users\n",
        db.name,
        server.pid(),
        users.len()
    );

    // 1,000 fans, one seat, all at once.
    let codes = Arc::new(Mutex::new(Vec::new()));
    let hot = {
        let (http, endpoint, tokens, codes) = (
            http.clone(),
            Arc::clone(&endpoint),
            Arc::clone(&tokens),
            Arc::clone(&codes),
        );
        run_phase(
            "holdSeat: 1,000 fans at once on one seat",
            HOT_FANS,
            HOT_FANS,
            move |i| {
                let (http, endpoint, tokens, codes) = (
                    http.clone(),
                    Arc::clone(&endpoint),
                    Arc::clone(&tokens),
                    Arc::clone(&codes),
                );
                async move {
                    let answer = gql(
                        &http,
                        &endpoint,
                        HOLD,
                        json!({"date": hot_date.to_string(), "seat": 1}),
                        Some(&tokens[i]),
                    )
                    .await;
                    let code = match answer {
                        Ok(answer) => error_code(&answer).unwrap_or("HELD").to_owned(),
                        Err(error) => format!("transport: {error}"),
                    };
                    codes.lock().map(|mut codes| codes.push(code)).ok();
                }
            },
        )
        .await
    };
    println!("{}", hot.report());
    let codes = codes.lock().map(|codes| codes.clone()).unwrap_or_default();
    let held = codes.iter().filter(|c| *c == "HELD").count();
    let unavailable = codes.iter().filter(|c| *c == "SEAT_UNAVAILABLE").count();
    println!(
        "    answers: {held} HELD, {unavailable} SEAT_UNAVAILABLE, {} other\n",
        codes.len() - held - unavailable
    );

    // Distinct seats from 64 clients, taking turns with the bare SQL.
    let reservations: Arc<Vec<Mutex<Vec<String>>>> = Arc::new(
        (0..2 * holder_count())
            .map(|_| Mutex::new(Vec::new()))
            .collect(),
    );
    let mut polled_ratios = Vec::new();
    let mut polls = 0;
    let mut ours_all = Vec::new();
    let mut ratios = Vec::new();
    let (mut our_cpu, mut bare_cpu) = (CpuTotals::default(), CpuTotals::default());
    let statements_before = server.metric(&http, "sql_statements_total").await?;
    let started = Instant::now();
    let mut hold_statements = 0;
    for round in 0..rounds() {
        let cpu = CpuMeter::start(&server);
        let bare = bare_holds(&db, round, &bare_seats, &bare_users, &bare_reservations).await?;
        bare_cpu.add(&cpu.totals());
        // Holds alone and holds under pollers take turns going first, so
        // that neither always meets the larger tables of the later run.
        let polled_first = round % 2 == 1;
        let mut polled = None;
        if polled_first {
            polled = Some(
                polled_holds(round, &http, &endpoint, &tokens, &our_dates, &reservations).await,
            );
        }
        let cpu = CpuMeter::start(&server);
        let statements = server.metric(&http, "sql_statements_total").await?;
        let ours = our_holds(round, &http, &endpoint, &tokens, &our_dates, &reservations).await;
        hold_statements += server.metric(&http, "sql_statements_total").await? - statements;
        our_cpu.add(&cpu.totals());
        if !polled_first {
            polled = Some(
                polled_holds(round, &http, &endpoint, &tokens, &our_dates, &reservations).await,
            );
        }
        let Some((polled, answered)) = polled else {
            unreachable!("the polled run happens before or after")
        };
        polls += answered;
        println!("{}", bare.report());
        println!("{}", ours.report());
        println!(
            "{}  (with {REPORT_POLLERS} salesReport pollers, {})",
            polled.report(),
            if polled_first { "first" } else { "second" }
        );
        ratios.push(ours.per_second() / bare.per_second());
        polled_ratios.push(polled.per_second() / ours.per_second());
        println!(
            "    round {}: ours / bare SQL {:.2}; holds with pollers / without {:.3}",
            round + 1,
            ratios[round],
            polled_ratios[round]
        );
        ours_all.push(ours);
    }
    let _ = (started, statements_before);
    ratios.sort_by(f64::total_cmp);
    let holds = Phase {
        name: format!("holdSeat: distinct seats, {CLIENTS} clients, all rounds"),
        elapsed: ours_all.iter().map(|phase| phase.elapsed).sum(),
        latencies: ours_all
            .into_iter()
            .flat_map(|phase| phase.latencies)
            .collect(),
    };
    println!("\n{}", holds.report());
    println!("    {}", our_cpu.per_op(hold_count()));
    println!("    bare SQL {}", bare_cpu.per_op(hold_count()));
    println!(
        "    {:.2} SQL statements per hold (server's own count, token checks included)",
        hold_statements as f64 / hold_count() as f64
    );
    println!(
        "    ours / bare SQL, median of {} rounds: {:.2}",
        rounds(),
        median(&ratios)
    );
    polled_ratios.sort_by(f64::total_cmp);
    let cpu = CpuMeter::start(&server);
    let reports = {
        let (http, endpoint, dates) = (http.clone(), Arc::clone(&endpoint), Arc::clone(&our_dates));
        run_phase("salesReport alone, 64 clients", CLIENTS, 4000, move |i| {
            let (http, endpoint, dates) = (http.clone(), Arc::clone(&endpoint), Arc::clone(&dates));
            async move {
                let date = dates[i % dates.len()];
                match gql(
                    &http,
                    &endpoint,
                    REPORT,
                    json!({"date": date.to_string()}),
                    Some(ORGANIZER_KEY),
                )
                .await
                {
                    Ok(answer) if answer["data"]["salesReport"].is_object() => {}
                    Ok(answer) => eprintln!("salesReport failed: {answer}"),
                    Err(error) => eprintln!("salesReport: {error}"),
                }
            }
        })
        .await
    };
    println!("{}", reports.report());
    println!("    {}", cpu.per_op(4000));
    println!(
        "    holds while {REPORT_POLLERS} organizers poll salesReport every {} s / holds alone, median of {} rounds: {:.3} ({polls} reports answered)",
        REPORT_EVERY.as_secs(),
        rounds(),
        median(&polled_ratios)
    );
    let each: Vec<String> = polled_ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!("    each round, sorted: {}", each.join(" "));
    let (mean, margin) = mean_and_margin(&polled_ratios);
    println!(
        "    mean {mean:.3}, 95 % interval {:.3} to {:.3} (mean ± t standard errors)",
        mean - margin,
        mean + margin
    );

    let statements_before = server.metric(&http, "sql_statements_total").await?;
    let cpu = CpuMeter::start(&server);
    let payments = {
        let (http, endpoint, tokens, reservations) = (
            http.clone(),
            Arc::clone(&endpoint),
            Arc::clone(&tokens),
            Arc::clone(&reservations),
        );
        run_phase(
            "\npay: four holds each, 64 clients",
            CLIENTS,
            holder_count(),
            move |holder| {
                let (http, endpoint, tokens, reservations) = (
                    http.clone(),
                    Arc::clone(&endpoint),
                    Arc::clone(&tokens),
                    Arc::clone(&reservations),
                );
                async move {
                    let ids = reservations[holder]
                        .lock()
                        .map(|ids| ids.clone())
                        .unwrap_or_default();
                    match gql(
                        &http,
                        &endpoint,
                        PAY,
                        json!({"ids": ids}),
                        Some(&tokens[HOT_FANS + holder]),
                    )
                    .await
                    {
                        Ok(answer) if answer["data"]["pay"]["id"].is_string() => {}
                        Ok(answer) => eprintln!("pay {holder} failed: {answer}"),
                        Err(error) => eprintln!("pay {holder}: {error}"),
                    }
                }
            },
        )
        .await
    };
    let pay_statements = server.metric(&http, "sql_statements_total").await? - statements_before;
    println!("{}", payments.report());
    println!("    {}", cpu.per_op(holder_count()));
    println!(
        "    {:.2} SQL statements per payment of four holds",
        pay_statements as f64 / holder_count() as f64
    );
    let cpu = CpuMeter::start(&server);
    let bare_payments = bare_payments(&db, &bare_users, &bare_reservations).await?;
    println!("{}", bare_payments.report());
    println!("    {}", cpu.per_op(holder_count()));
    println!("    {BARE_PAY_STATEMENTS} SQL statements per payment of four holds");
    println!(
        "    pay / bare SQL of a payment: {:.2}",
        payments.per_second() / bare_payments.per_second()
    );

    let sold = db
        .number("SELECT COUNT(*) FROM seats WHERE status = 'SOLD'")
        .await?;
    println!(
        "\nseats sold: {sold} (expected {}: ours and the bare SQL's; and 1 held on the hot seat)",
        2 * hold_count()
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-reservation"))
        .arg("check")
        .env("DATABASE_URL", &db.url)
        .env("MAX_ACTIVE_TOKENS", "100000")
        .env("TOKEN_SECRET", TOKEN_SECRET)
        .env("RUST_LOG", "error")
        .output()?;
    print!(
        "ticket-reservation check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    drop(server);
    db.drop_database().await?;
    Ok(())
}

/// One round of our holds: holder h of the round holds four seats.
async fn our_holds(
    round: usize,
    http: &reqwest::Client,
    endpoint: &Arc<String>,
    tokens: &Arc<Vec<String>>,
    dates: &Arc<Vec<u64>>,
    reservations: &Arc<Vec<Mutex<Vec<String>>>>,
) -> Phase {
    let (http, endpoint, tokens, dates, reservations) = (
        http.clone(),
        Arc::clone(endpoint),
        Arc::clone(tokens),
        Arc::clone(dates),
        Arc::clone(reservations),
    );
    run_phase(
        &format!("  ours: holdSeat, round {}", round + 1),
        CLIENTS,
        HOLDS_PER_ROUND,
        move |i| {
            let (http, endpoint, tokens, dates, reservations) = (
                http.clone(),
                Arc::clone(&endpoint),
                Arc::clone(&tokens),
                Arc::clone(&dates),
                Arc::clone(&reservations),
            );
            async move {
                let n = round * HOLDS_PER_ROUND + i;
                let holder = n / HOLDS_EACH;
                let date = dates[n / SEATS_PER_DATE];
                let seat = n % SEATS_PER_DATE + 1;
                let token = &tokens[HOT_FANS + holder];
                match gql(
                    &http,
                    &endpoint,
                    HOLD,
                    json!({"date": date.to_string(), "seat": seat}),
                    Some(token),
                )
                .await
                {
                    Ok(answer) => match answer["data"]["holdSeat"]["id"].as_str() {
                        Some(id) => {
                            reservations[holder]
                                .lock()
                                .map(|mut mine| mine.push(id.to_owned()))
                                .ok();
                        }
                        None => eprintln!("hold {n} failed: {answer}"),
                    },
                    Err(error) => eprintln!("hold {n}: {error}"),
                }
            }
        },
    )
    .await
}

/// Round `round` of our holds run again on seats and holders of their own,
/// while REPORT_POLLERS organizers watch those dates' salesReport; the
/// phase, and how many reports were answered.
async fn polled_holds(
    round: usize,
    http: &reqwest::Client,
    endpoint: &Arc<String>,
    tokens: &Arc<Vec<String>>,
    dates: &Arc<Vec<u64>>,
    reservations: &Arc<Vec<Mutex<Vec<String>>>>,
) -> (Phase, usize) {
    let watched = Arc::new(dates[round_dates(rounds() + round)].to_vec());
    let pollers = ReportPollers::start(http, endpoint, watched);
    let phase = our_holds(
        rounds() + round,
        http,
        endpoint,
        tokens,
        dates,
        reservations,
    )
    .await;
    (phase, pollers.stop().await)
}

/// The median of sorted `samples`: the middle one, or the mean of the two
/// middle ones.
fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// The mean of `samples` and the half-width of its 95 % interval: Student's
/// t for n − 1 degrees of freedom times the standard error (a few rounds
/// are too few for the normal 1.96).
fn mean_and_margin(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    if samples.len() < 2 {
        return (mean, f64::NAN);
    }
    let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, t_95(samples.len() - 1) * (variance / n).sqrt())
}

/// Student's t for a two-sided 95 % interval with `df` degrees of freedom.
fn t_95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=40 => 2.021,
        41..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

/// The dates whose seats round `round` of our holds takes.
fn round_dates(round: usize) -> std::ops::Range<usize> {
    let per_round = HOLDS_PER_ROUND / SEATS_PER_DATE;
    round * per_round..(round + 1) * per_round
}

/// Organizers watching the sale: each asks for one date's salesReport
/// every REPORT_EVERY, cycling through the dates being sold, until stopped.
struct ReportPollers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl ReportPollers {
    fn start(http: &reqwest::Client, endpoint: &Arc<String>, dates: Arc<Vec<u64>>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..REPORT_POLLERS)
            .map(|poller| {
                let (http, endpoint, dates, stop) = (
                    http.clone(),
                    Arc::clone(endpoint),
                    Arc::clone(&dates),
                    Arc::clone(&stop),
                );
                tokio::spawn(async move {
                    let mut answered = 0;
                    let mut next = poller;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let date = dates[next % dates.len()];
                        next += REPORT_POLLERS;
                        match gql(
                            &http,
                            &endpoint,
                            REPORT,
                            json!({"date": date.to_string()}),
                            Some(ORGANIZER_KEY),
                        )
                        .await
                        {
                            Ok(answer) if answer["data"]["salesReport"].is_object() => {
                                answered += 1
                            }
                            Ok(answer) => eprintln!("salesReport failed: {answer}"),
                            Err(error) => eprintln!("salesReport: {error}"),
                        }
                        tokio::time::sleep(REPORT_EVERY).await;
                    }
                    answered
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the pollers; how many reports they got.
    async fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut answered = 0;
        for task in self.tasks {
            answered += task.await.unwrap_or(0);
        }
        answered
    }
}

/// One round of the bare SQL of a hold, from as many connections as we
/// have clients, each keeping its connection and prepared statements.
async fn bare_holds(
    db: &BenchDb,
    round: usize,
    seats: &Arc<Vec<u64>>,
    users: &Arc<Vec<uuid::Uuid>>,
    held: &Arc<Vec<Mutex<Vec<uuid::Uuid>>>>,
) -> BenchResult<Phase> {
    let connections = connections(&db.pool, CLIENTS).await?;
    let (seats, users, held) = (Arc::clone(seats), Arc::clone(users), Arc::clone(held));
    let name = format!(
        "  bare SQL: BEGIN, INSERT, UPDATE, COMMIT, round {}",
        round + 1
    );
    Ok(
        run_on_connections(&name, connections, HOLDS_PER_ROUND, move |mut conn, i| {
            let (seats, users, held) = (Arc::clone(&seats), Arc::clone(&users), Arc::clone(&held));
            async move {
                let n = round * HOLDS_PER_ROUND + i;
                match bare_hold(&mut conn, users[n / HOLDS_EACH], seats[n]).await {
                    Ok(reservation) => {
                        if let Ok(mut ids) = held[n / HOLDS_EACH].lock() {
                            ids.push(reservation);
                        }
                    }
                    Err(error) => eprintln!("bare hold {n}: {error}"),
                }
                conn
            }
        })
        .await,
    )
}

/// Statements in the bare SQL of a payment, BEGIN and COMMIT included.
const BARE_PAY_STATEMENTS: usize = 8;

/// The bare SQL of paying for four holds, from as many connections as we
/// have clients: what a hand-written service would send to pay once and
/// keep the books (`check` passes on its rows), without our token, key or
/// lapse checks beyond the held rows themselves.
async fn bare_payments(
    db: &BenchDb,
    users: &Arc<Vec<uuid::Uuid>>,
    held: &Arc<Vec<Mutex<Vec<uuid::Uuid>>>>,
) -> BenchResult<Phase> {
    let connections = connections(&db.pool, CLIENTS).await?;
    let (users, held) = (Arc::clone(users), Arc::clone(held));
    let name = "bare SQL: pay four holds (8 statements), 64 connections";
    Ok(run_on_connections(
        name,
        connections,
        holder_count(),
        move |mut conn, holder| {
            let (users, held) = (Arc::clone(&users), Arc::clone(&held));
            async move {
                let ids = held[holder]
                    .lock()
                    .map(|ids| ids.clone())
                    .unwrap_or_default();
                if let Err(error) = bare_pay(&mut conn, users[holder], &ids).await {
                    eprintln!("bare payment {holder}: {error}");
                    let _ = conn.query_drop("ROLLBACK").await;
                }
                conn
            }
        },
    )
    .await)
}

async fn bare_pay(
    conn: &mut mysql_async::Conn,
    user: uuid::Uuid,
    reservations: &[uuid::Uuid],
) -> BenchResult<()> {
    let ids: Vec<String> = reservations
        .iter()
        .map(|id| format!("UNHEX('{}')", id.simple()))
        .collect();
    let ids = ids.join(",");
    let user_id = user.as_bytes().to_vec();
    let payment = uuid::Uuid::now_v7().as_bytes().to_vec();
    conn.query_drop("BEGIN").await?;
    let rows: Vec<(Vec<u8>, u64, String)> = conn
        .exec(
            format!(
                "SELECT id, seat_id, CAST(price AS CHAR) FROM reservations WHERE id IN ({ids}) \
                 AND user_id = ? AND status = 'HELD' AND held_until > UTC_TIMESTAMP(6) FOR UPDATE"
            ),
            (user_id.clone(),),
        )
        .await?;
    if rows.len() != reservations.len() {
        return Err("a hold is gone".into());
    }
    let total: bigdecimal::BigDecimal = rows
        .iter()
        .filter_map(|(_, _, price)| price.parse::<bigdecimal::BigDecimal>().ok())
        .sum();
    let total = total.to_string();
    conn.exec_drop(
        "UPDATE users SET balance = balance - ? WHERE id = ? AND balance >= ?",
        (total.clone(), user_id.clone(), total.clone()),
    )
    .await?;
    if conn.affected_rows() != 1 {
        return Err("the balance is too low".into());
    }
    conn.exec_drop(
        "INSERT INTO payments (id, user_id, amount, paid_at) VALUES (?, ?, ?, UTC_TIMESTAMP(6))",
        (payment.clone(), user_id.clone(), total.clone()),
    )
    .await?;
    conn.exec_drop(
        format!("UPDATE reservations SET status = 'PAID', payment_id = ? WHERE id IN ({ids})"),
        (payment.clone(),),
    )
    .await?;
    let seats: Vec<String> = rows.iter().map(|(_, seat, _)| seat.to_string()).collect();
    conn.query_drop(format!(
        "UPDATE seats SET status = 'SOLD', held_by_reservation_id = NULL, held_until = NULL \
         WHERE id IN ({})",
        seats.join(",")
    ))
    .await?;
    // The entry's balance_after is the balance this transaction just wrote.
    conn.exec_drop(
        "INSERT INTO balance_entries (user_id, kind, amount, balance_after, payment_id, at) \
         SELECT id, 'PAYMENT', ?, balance, ?, UTC_TIMESTAMP(6) FROM users WHERE id = ?",
        (format!("-{total}"), payment, user_id),
    )
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}
