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
const HOLDERS: usize = 5000;
const HOLDS_EACH: usize = 4;
const HOLDS: usize = HOLDERS * HOLDS_EACH;
const SEATS_PER_DATE: usize = 50;

const HOLD: &str = "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id } }";
const PAY: &str = "mutation($ids: [ID!]!) { pay(reservationIds: $ids) { id amount } }";

#[tokio::main]
async fn main() -> BenchResult<()> {
    let db = BenchDb::create().await?;
    println!("database {}", db.name);
    let dates_needed = (HOLDS / SEATS_PER_DATE) as u64;
    let hot_date = insert_concert(&db, 1).await?[0];
    let our_dates = insert_concert(&db, dates_needed).await?;
    let bare_dates = insert_concert(&db, dates_needed).await?;
    let users = insert_users(&db, 0, (HOT_FANS + HOLDERS) as u64, "1000000.00").await?;
    let tokens = Arc::new(insert_tokens(&db, &users, 1, true).await?);
    let server = ServerProcess::start(
        &db.url,
        &[
            ("MAX_ACTIVE_TOKENS", "100000"),
            ("ACTIVE_TOKEN_SECONDS", "3600"),
            ("HOLD_SECONDS", "3600"),
            ("MAX_HOLDS_PER_USER", "4"),
        ],
    )?;
    let http = http_client();
    let endpoint = Arc::new(server.url("/graphql"));
    println!(
        "server pid {} on port {}; {} ACTIVE users, {} seats each for us and for bare SQL\n",
        server.pid(),
        server.port,
        users.len(),
        HOLDS
    );

    // The bare SQL of a hold first, at the same concurrency: BEGIN, INSERT
    // the reservation, the conditional UPDATE of the seat, COMMIT.
    let bare_users = insert_users(&db, (HOT_FANS + HOLDERS) as u64, HOLDERS as u64, "0").await?;
    let cpu = CpuMeter::start(&server);
    let bare = bare_holds(&db, &bare_dates, &bare_users).await?;
    println!("{}", bare.report());
    println!("    {}", cpu.per_op(HOLDS));

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
        "    answers: {held} HELD, {unavailable} SEAT_UNAVAILABLE, {} other",
        codes.len() - held - unavailable
    );

    // Distinct seats from 64 clients: holder h holds four seats.
    let reservations: Arc<Vec<Mutex<Vec<String>>>> =
        Arc::new((0..HOLDERS).map(|_| Mutex::new(Vec::new())).collect());
    let statements_before = server.metric(&http, "sql_statements_total").await?;
    let cpu = CpuMeter::start(&server);
    let holds = {
        let (http, endpoint, tokens, reservations) = (
            http.clone(),
            Arc::clone(&endpoint),
            Arc::clone(&tokens),
            Arc::clone(&reservations),
        );
        let dates = Arc::new(our_dates.clone());
        run_phase(
            "holdSeat: distinct seats, 64 clients",
            CLIENTS,
            HOLDS,
            move |i| {
                let (http, endpoint, tokens, reservations, dates) = (
                    http.clone(),
                    Arc::clone(&endpoint),
                    Arc::clone(&tokens),
                    Arc::clone(&reservations),
                    Arc::clone(&dates),
                );
                async move {
                    let holder = i / HOLDS_EACH;
                    let date = dates[i / SEATS_PER_DATE];
                    let seat = i % SEATS_PER_DATE + 1;
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
                            None => eprintln!("hold {i} failed: {answer}"),
                        },
                        Err(error) => eprintln!("hold {i}: {error}"),
                    }
                }
            },
        )
        .await
    };
    let hold_statements = server.metric(&http, "sql_statements_total").await? - statements_before;
    println!("{}", holds.report());
    println!("    {}", cpu.per_op(HOLDS));
    println!(
        "    {:.2} SQL statements per hold (server's own count, token checks included)",
        hold_statements as f64 / HOLDS as f64
    );
    println!(
        "    ours / bare SQL: {:.2}",
        holds.per_second() / bare.per_second()
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
            "pay: four holds each, 64 clients",
            CLIENTS,
            HOLDERS,
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
    println!("    {}", cpu.per_op(HOLDERS));
    println!(
        "    {:.2} SQL statements per payment of four holds",
        pay_statements as f64 / HOLDERS as f64
    );

    let sold = db
        .number("SELECT COUNT(*) FROM seats WHERE status = 'SOLD'")
        .await?;
    println!("\nseats sold: {sold} (expected {HOLDS})");
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

/// The bare SQL of a hold, from as many connections as we have clients,
/// each keeping its connection and its prepared statements.
async fn bare_holds(db: &BenchDb, dates: &[u64], users: &[uuid::Uuid]) -> BenchResult<Phase> {
    let mut seat_ids = Vec::new();
    for date in dates {
        let mut conn = db.pool.get_conn().await?;
        let ids: Vec<u64> = conn
            .query(format!(
                "SELECT id FROM seats WHERE concert_date_id = {date} ORDER BY number"
            ))
            .await?;
        seat_ids.extend(ids);
    }
    let seat_ids = Arc::new(seat_ids);
    let users = Arc::new(users.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let mut conn = db.pool.get_conn().await?;
        let (seat_ids, users, next) =
            (Arc::clone(&seat_ids), Arc::clone(&users), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= HOLDS {
                    return latencies;
                }
                let began = Instant::now();
                if let Err(error) = bare_hold(&mut conn, users[i / HOLDS_EACH], seat_ids[i]).await {
                    eprintln!("bare hold {i}: {error}");
                }
                latencies.push(began.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await?);
    }
    Ok(Phase {
        name: "bare SQL hold: BEGIN, INSERT, UPDATE, COMMIT".to_owned(),
        latencies,
        elapsed: started.elapsed(),
    })
}

async fn bare_hold(conn: &mut mysql_async::Conn, user: uuid::Uuid, seat: u64) -> BenchResult<()> {
    let reservation = uuid::Uuid::now_v7();
    conn.query_drop("BEGIN").await?;
    conn.exec_drop(
        "INSERT INTO reservations (id, user_id, seat_id, token_seq, status, price, created_at, held_until) \
         VALUES (?, ?, ?, 1, 'HELD', 1000.00, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 HOUR)",
        (reservation.as_bytes().to_vec(), user.as_bytes().to_vec(), seat),
    )
    .await?;
    conn.exec_drop(
        "UPDATE seats SET status = 'HELD', held_by_reservation_id = ?, held_until = UTC_TIMESTAMP(6) + INTERVAL 1 HOUR \
         WHERE id = ? AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= UTC_TIMESTAMP(6)))",
        (reservation.as_bytes().to_vec(), seat),
    )
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}
