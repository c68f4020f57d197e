//! The on-sale minute, end to end, against the real server binary: fans
//! arrive (`issueToken`), follow the line over websockets, are admitted,
//! browse, hold, charge and pay, until the last seat is sold; then one
//! more admission turn with everyone still in line listening, to time the
//! fan-out and weigh the subscribers.
//!
//! cargo bench --bench rush
//!
//! `RUSH_FANS` (100,000), `RUSH_ARRIVAL_SECONDS` (10) and `RUSH_DATES` (100
//! dates of 50 seats) change its size. Writes the timeline to
//! `target/bench-rush.csv` for `scripts/plot-benchmarks`.
//!
//! One process may keep only as many sockets open as its file-descriptor
//! limit allows. The bench raises its soft limit to the hard one (the server
//! inherits it); where that is below one socket per fan, fans share sockets,
//! several subscriptions on each (graphql-transport-ws multiplexes them),
//! and the report says how many.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a load generator prints its figures and stops on a broken setup"
)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::*;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;

const MAX_ACTIVE: &str = "5000";
/// Requests the load generator has on the wire at once, for arrivals and
/// for admitted fans apart (in a real rush they are different browsers; one
/// queue would keep the buyers waiting behind the crowd still arriving):
/// the connections must fit in its file-descriptor limit beside the sockets.
const HTTP_IN_FLIGHT: usize = 256;
/// File descriptors kept back from the sockets, for HTTP connections, the
/// database and the server's own files.
const FD_RESERVE: u64 = 2_500;
/// Pauses and attempts after a retry-safe answer (OVERLOADED, UNAVAILABLE,
/// no answer), as a well-behaved client would.
const RETRY_PAUSE: Duration = Duration::from_millis(300);
const ATTEMPTS: usize = 10;
const SALE_DEADLINE: Duration = Duration::from_secs(300);
/// A retried subscription's id: the fan's number plus this per attempt.
const SUBSCRIPTION_IDS_PER_ATTEMPT: u64 = 100_000_000;

const ISSUE: &str = "mutation($user: UUID!) { issueToken(userId: $user) { token status } }";
const FOLLOW: &str =
    "subscription($token: String!) { queueStatus(token: $token) { status position } }";
const BROWSE: &str = "{ concerts { dates { id availableSeats } } }";
const SEATS: &str = "query($date: ID!) { availableSeats(concertDateId: $date) { number price } }";
const HOLD: &str = "mutation($date: ID!, $seat: Int!) { holdSeat(concertDateId: $date, seatNumber: $seat) { id } }";
const CHARGE: &str = "mutation($user: UUID!, $amount: Decimal!, $key: String!) { chargeBalance(userId: $user, amount: $amount, idempotencyKey: $key) { balance } }";
const PAY: &str = "mutation($ids: [ID!]!, $key: String!) { pay(reservationIds: $ids, idempotencyKey: $key) { id } }";

struct Size {
    fans: usize,
    arrival: Duration,
    dates: u64,
}

impl Size {
    fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        Self {
            fans: number("RUSH_FANS", 100_000) as usize,
            arrival: Duration::from_secs(number("RUSH_ARRIVAL_SECONDS", 10)),
            dates: number("RUSH_DATES", 100),
        }
    }

    fn seats(&self) -> usize {
        self.dates as usize * 50
    }
}

/// What happened when, shared by every fan.
struct Record {
    /// The first arrival: set when the rush starts, after the sockets open.
    started: std::sync::OnceLock<Instant>,
    arrived: Mutex<Vec<Duration>>,
    admitted: Mutex<Vec<Duration>>,
    sold: Mutex<Vec<Duration>>,
    latencies: Mutex<HashMap<&'static str, Vec<Duration>>>,
    answers: Mutex<BTreeMap<(&'static str, String), usize>>,
    outcomes: Mutex<BTreeMap<&'static str, usize>>,
    seats_sold: AtomicUsize,
    sale_over: AtomicBool,
    /// Fans that have either ended or are waiting with a live subscription.
    settled: AtomicUsize,
    /// Set for the fan-out probe: every state a subscriber hears, timed.
    probing: AtomicBool,
    heard: Mutex<Vec<Instant>>,
    /// Messages the subscribers have received.
    messages: AtomicUsize,
    /// The bench is over: sockets closing are no news.
    finished: AtomicBool,
}

impl Record {
    fn new() -> Self {
        Self {
            started: std::sync::OnceLock::new(),
            arrived: Mutex::default(),
            admitted: Mutex::default(),
            sold: Mutex::default(),
            latencies: Mutex::default(),
            answers: Mutex::default(),
            outcomes: Mutex::default(),
            seats_sold: AtomicUsize::new(0),
            sale_over: AtomicBool::new(false),
            settled: AtomicUsize::new(0),
            probing: AtomicBool::new(false),
            heard: Mutex::default(),
            finished: AtomicBool::new(false),
            messages: AtomicUsize::new(0),
        }
    }

    fn since_start(&self) -> Duration {
        self.started.get_or_init(Instant::now).elapsed()
    }

    fn mark(&self, series: &Mutex<Vec<Duration>>) {
        let at = self.since_start();
        series.lock().unwrap().push(at);
    }

    fn took(&self, operation: &'static str, latency: Duration) {
        self.latencies
            .lock()
            .unwrap()
            .entry(operation)
            .or_default()
            .push(latency);
    }

    fn answer(&self, operation: &'static str, code: &str) {
        *self
            .answers
            .lock()
            .unwrap()
            .entry((operation, code.to_owned()))
            .or_default() += 1;
    }

    fn end(&self, outcome: &'static str) {
        *self.outcomes.lock().unwrap().entry(outcome).or_default() += 1;
        self.settled.fetch_add(1, Ordering::Relaxed);
    }
}

/// The load generator's side of the server: HTTP calls, bounded and
/// retried where the contract says a retry is safe.
struct Client {
    http: reqwest::Client,
    endpoint: String,
    arrivals: Semaphore,
    shoppers: Semaphore,
    record: Arc<Record>,
}

impl Client {
    /// The answer's `data`, or the error code it carried; every answer is
    /// counted by operation and code, every attempt timed.
    async fn call(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> Result<Value, String> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let answer = {
                let wire = if operation == "issueToken" {
                    &self.arrivals
                } else {
                    &self.shoppers
                };
                let _slot = wire.acquire().await.map_err(|e| e.to_string())?;
                // Timed on the wire, not while queued in the load generator.
                let began = Instant::now();
                let answer = gql(&self.http, &self.endpoint, query, variables.clone(), token).await;
                self.record.took(operation, began.elapsed());
                answer
            };
            let code = match &answer {
                Ok(answer) => error_code(answer).unwrap_or(if answer["data"].is_null() {
                    "NO_DATA"
                } else {
                    "ok"
                }),
                Err(_) => "NO_ANSWER",
            }
            .to_owned();
            self.record.answer(operation, &code);
            match (answer, code.as_str()) {
                (Ok(mut answer), "ok") => return Ok(answer["data"].take()),
                (_, "OVERLOADED" | "UNAVAILABLE" | "NO_ANSWER") => {
                    last = code;
                    tokio::time::sleep(RETRY_PAUSE.mul_f64(rand::random_range(0.5..1.5))).await;
                }
                (_, _) => return Err(code),
            }
        }
        Err(last)
    }
}

type Writer = SplitSink<WebSocket, Message>;
type Reader = SplitStream<WebSocket>;

/// What a waiting fan hears from its subscription.
#[derive(Debug, PartialEq)]
enum Heard {
    Waiting,
    Active,
    Ended(String),
}

/// One websocket, carrying the subscriptions of one or more fans.
struct Socket {
    writer: tokio::sync::Mutex<Writer>,
    listeners: Mutex<HashMap<u64, Listener>>,
}

struct Listener {
    told: mpsc::UnboundedSender<Heard>,
    heard_first: bool,
}

impl Socket {
    async fn open(port: u16, record: Arc<Record>) -> BenchResult<Arc<Self>> {
        let (mut writer, mut reader) = open_websocket(port).await?.split();
        writer
            .send(Message::text(
                json!({"type": "connection_init", "payload": {}}).to_string(),
            ))
            .await?;
        loop {
            match reader.next().await {
                Some(Ok(Message::Text(text))) if text.contains("connection_ack") => break,
                Some(Ok(_)) => {}
                other => return Err(format!("no connection_ack: {other:?}").into()),
            }
        }
        let socket = Arc::new(Self {
            writer: tokio::sync::Mutex::new(writer),
            listeners: Mutex::default(),
        });
        tokio::spawn(Arc::clone(&socket).read(reader, record));
        Ok(socket)
    }

    async fn subscribe(
        &self,
        fan: u64,
        token: &str,
    ) -> BenchResult<mpsc::UnboundedReceiver<Heard>> {
        let (told, hears) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap().insert(
            fan,
            Listener {
                told,
                heard_first: false,
            },
        );
        let message = json!({"id": fan.to_string(), "type": "subscribe",
            "payload": {"query": FOLLOW, "variables": {"token": token}}});
        self.writer
            .lock()
            .await
            .send(Message::text(message.to_string()))
            .await?;
        Ok(hears)
    }

    /// Hands each message to the fan whose subscription it belongs to: the
    /// first state, ACTIVE, or the end; other positions are only counted.
    async fn read(self: Arc<Self>, mut reader: Reader, record: Arc<Record>) {
        while let Some(Ok(message)) = reader.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            record.messages.fetch_add(1, Ordering::Relaxed);
            if record.probing.load(Ordering::Relaxed) {
                record.heard.lock().unwrap().push(Instant::now());
            }
            let Some(fan) = frame_id(&text) else { continue };
            let heard = if text.contains("\"ACTIVE\"") {
                Heard::Active
            } else if text.contains("\"WAITING\"") {
                Heard::Waiting
            } else {
                Heard::Ended(ending_code(&text))
            };
            let mut listeners = self.listeners.lock().unwrap();
            let Some(listener) = listeners.get_mut(&fan) else {
                continue;
            };
            if heard == Heard::Waiting && listener.heard_first {
                continue;
            }
            listener.heard_first = true;
            let last = heard != Heard::Waiting;
            let _ = listener.told.send(heard);
            if last {
                listeners.remove(&fan);
            }
        }
        for (_, listener) in self.listeners.lock().unwrap().drain() {
            let _ = listener
                .told
                .send(Heard::Ended("the socket closed".to_owned()));
        }
    }
}

/// What ended a subscription: its error's code, or EXPIRED.
fn ending_code(text: &str) -> String {
    if let Some((_, after)) = text.split_once("\"code\":\"") {
        return after.split('"').next().unwrap_or_default().to_owned();
    }
    if text.contains("\"EXPIRED\"") {
        return "EXPIRED".to_owned();
    }
    format!("unexpected: {}", text.chars().take(200).collect::<String>())
}

/// The subscription id of a graphql-transport-ws frame (ids are fan numbers,
/// plus `SUBSCRIPTION_IDS_PER_ATTEMPT` for each retry).
fn frame_id(text: &str) -> Option<u64> {
    let after = text.split_once("\"id\":\"")?.1;
    after.split('"').next()?.parse().ok()
}

struct Rush {
    client: Client,
    record: Arc<Record>,
    sockets: Vec<Arc<Socket>>,
    users: Vec<uuid::Uuid>,
    seats: usize,
}

impl Rush {
    async fn fan(self: Arc<Self>, fan: usize) {
        let outcome = self.follow_and_buy(fan).await;
        self.record.end(outcome);
    }

    async fn follow_and_buy(&self, fan: usize) -> &'static str {
        let record = &self.record;
        let user = self.users[fan];
        let Ok(issued) = self
            .client
            .call("issueToken", ISSUE, json!({"user": user}), None)
            .await
        else {
            return "issueToken failed";
        };
        record.mark(&record.arrived);
        let token = issued["issueToken"]["token"].as_str().unwrap_or_default();
        if issued["issueToken"]["status"] != "ACTIVE" {
            match self.wait_in_line(fan, token).await {
                Ok(()) => {}
                Err(outcome) => return outcome,
            }
        }
        record.mark(&record.admitted);
        if record.sale_over.load(Ordering::Relaxed) {
            return "admitted after the sale";
        }
        self.buy(fan, token).await
    }

    /// Follows the line until ACTIVE, subscribing again after a retry-safe
    /// refusal (OVERLOADED, UNAVAILABLE), as a well-behaved client would.
    async fn wait_in_line(&self, fan: usize, token: &str) -> Result<(), &'static str> {
        for attempt in 0..ATTEMPTS as u64 {
            match self.follow_once(fan, attempt, token).await {
                Ok(()) => return Ok(()),
                Err(code) if code == "OVERLOADED" || code == "UNAVAILABLE" => {
                    tokio::time::sleep(RETRY_PAUSE.mul_f64(rand::random_range(0.5..1.5))).await;
                }
                Err(code) => {
                    if !self.record.finished.load(Ordering::Relaxed) {
                        eprintln!("fan {fan}: subscription ended: {code}");
                    }
                    return Err("subscription ended");
                }
            }
        }
        Err("subscription refused every time")
    }

    /// One subscription (a fresh id per attempt, so that a retry never
    /// meets the end of the last one): `Ok` once ACTIVE, else the code that
    /// ended it. The fan counts as settled while it listens, so the probe
    /// can start when every fan is either done or waiting.
    async fn follow_once(&self, fan: usize, attempt: u64, token: &str) -> Result<(), String> {
        let socket = &self.sockets[fan % self.sockets.len()];
        let began = Instant::now();
        let mut hears = socket
            .subscribe(attempt * SUBSCRIPTION_IDS_PER_ATTEMPT + fan as u64, token)
            .await
            .map_err(|_| "NO_ANSWER".to_owned())?;
        let mut listening = false;
        let ended = loop {
            let heard = hears.recv().await;
            if !listening {
                self.record.took("subscribe: first state", began.elapsed());
                let code = match &heard {
                    Some(Heard::Ended(code)) => code.as_str(),
                    None => "NO_ANSWER",
                    Some(_) => "ok",
                };
                self.record.answer("subscribe", code);
            }
            match heard {
                Some(Heard::Waiting) if !listening => {
                    listening = true;
                    self.record.settled.fetch_add(1, Ordering::Relaxed);
                }
                Some(Heard::Waiting) => {}
                Some(Heard::Active) => break Ok(()),
                Some(Heard::Ended(code)) => break Err(code),
                None => break Err("NO_ANSWER".to_owned()),
            }
        };
        if listening {
            self.record.settled.fetch_sub(1, Ordering::Relaxed);
        }
        ended
    }

    /// Browses the dates once, picks one with seats, and tries its seats
    /// until a hold succeeds; only when that date has none left does it
    /// browse again, as a fan in a browser would.
    async fn buy(&self, fan: usize, token: &str) -> &'static str {
        let (client, record) = (&self.client, &self.record);
        let token = Some(token);
        let mut chosen: Option<String> = None;
        for _ in 0..50 {
            let date = match chosen.take() {
                Some(date) => date,
                None => match self.pick_date(token).await {
                    Ok(Some(date)) => date,
                    Ok(None) => return "found it sold out",
                    Err(()) => return "browse failed",
                },
            };
            let Ok(free) = client
                .call("availableSeats", SEATS, json!({"date": date}), token)
                .await
            else {
                return "seat list failed";
            };
            let Some(seat) = free["availableSeats"]
                .as_array()
                .filter(|seats| !seats.is_empty())
                .map(|seats| seats[rand::random_range(0..seats.len())].clone())
            else {
                continue;
            };
            chosen = Some(date.clone());
            let held = client
                .call(
                    "holdSeat",
                    HOLD,
                    json!({"date": date, "seat": seat["number"]}),
                    token,
                )
                .await;
            let reservation = match held {
                Ok(held) => held["holdSeat"]["id"].clone(),
                Err(code) if code == "SEAT_UNAVAILABLE" => continue,
                Err(_) => return "hold failed",
            };
            let charge = json!({"user": self.users[fan], "amount": seat["price"], "key": format!("rush-charge-{fan}")});
            if client
                .call("chargeBalance", CHARGE, charge, None)
                .await
                .is_err()
            {
                return "charge failed";
            }
            let pay = json!({"ids": [reservation], "key": format!("rush-pay-{fan}")});
            if client.call("pay", PAY, pay, token).await.is_err() {
                return "pay failed";
            }
            record.mark(&record.sold);
            if record.seats_sold.fetch_add(1, Ordering::Relaxed) + 1 >= self.seats {
                record.sale_over.store(true, Ordering::Relaxed);
            }
            return "paid";
        }
        "gave up after 50 tries"
    }

    /// One date with seats to hold, picked at random from the catalogue;
    /// `None` when none has any.
    async fn pick_date(&self, token: Option<&str>) -> Result<Option<String>, ()> {
        let listed = self
            .client
            .call("browse dates", BROWSE, json!({}), token)
            .await
            .map_err(|_| ())?;
        let open: Vec<&str> = listed["concerts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|concert| concert["dates"].as_array().into_iter().flatten())
            .filter(|date| date["availableSeats"].as_u64() > Some(0))
            .filter_map(|date| date["id"].as_str())
            .collect();
        if open.is_empty() {
            return Ok(None);
        }
        Ok(Some(open[rand::random_range(0..open.len())].to_owned()))
    }
}

/// Raises this process's open-file limit to its hard limit (children
/// inherit it); the sockets it may then open.
fn raise_file_limit() -> BenchResult<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
    Ok(hard)
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let size = Size::from_env();
    let file_limit = raise_file_limit()?;
    let socket_count = (size.fans as u64)
        .min(file_limit.saturating_sub(FD_RESERVE))
        .max(1) as usize;
    let db = BenchDb::create().await?;
    let dates = insert_concert(&db, size.dates).await?;
    let users = insert_users(&db, 0, size.fans as u64, "0").await?;
    let settings = [
        ("MAX_ACTIVE_TOKENS", MAX_ACTIVE),
        ("ACTIVE_TOKEN_SECONDS", "600"),
        ("HOLD_SECONDS", "300"),
        ("ADMIT_INTERVAL_MS", "1000"),
        ("MAX_WEBSOCKETS", "1000000"),
    ];
    let server = ServerProcess::start(&db.url, &settings)?;
    let http = http_client();
    let record = Arc::new(Record::new());
    println!(
        "== the on-sale: {} fans arriving over {:?}, {} seats ({} dates of 50), MAX_ACTIVE_TOKENS {MAX_ACTIVE} ==",
        size.fans,
        size.arrival,
        size.seats(),
        dates.len()
    );
    println!(
        "(open-file limit {file_limit}: {socket_count} websockets, {:.1} fans' subscriptions on each at most)",
        size.fans as f64 / socket_count as f64
    );

    let rss_before = server.rss_kib();
    let mut sockets = Vec::with_capacity(socket_count);
    let opening = Instant::now();
    for chunk in (0..socket_count).collect::<Vec<_>>().chunks(256) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|_| Socket::open(server.port, Arc::clone(&record))),
        )
        .await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    println!(
        "({socket_count} websockets opened in {:.1?}; server RSS {} MiB before them)",
        opening.elapsed(),
        rss_before / 1024
    );
    let rush = Arc::new(Rush {
        client: Client {
            http: http.clone(),
            endpoint: server.url("/graphql"),
            arrivals: Semaphore::new(HTTP_IN_FLIGHT),
            shoppers: Semaphore::new(HTTP_IN_FLIGHT),
            record: Arc::clone(&record),
        },
        record: Arc::clone(&record),
        sockets,
        users,
        seats: size.seats(),
    });
    let statements_before = server.metric(&http, "sql_statements_total").await?;
    let turns_before = server.metric(&http, "admission_turns_total").await?;
    let cpu = CpuMeter::start(&server);

    // Arrivals, evenly spread over the arrival window.
    let gap = size.arrival.as_secs_f64() / size.fans as f64;
    let arrivals = {
        let rush = Arc::clone(&rush);
        let record = Arc::clone(&record);
        tokio::spawn(async move {
            for fan in 0..rush.users.len() {
                let due = *record.started.get_or_init(Instant::now)
                    + Duration::from_secs_f64(gap * fan as f64);
                tokio::time::sleep_until(due.into()).await;
                tokio::spawn(Arc::clone(&rush).fan(fan));
            }
        })
    };
    arrivals.await?;
    let arrivals_sent = record.since_start();
    while !record.sale_over.load(Ordering::Relaxed) && record.since_start() < SALE_DEADLINE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sold_out_after = record.since_start();
    let cpu_of_sale = cpu.totals();
    let statements = server.metric(&http, "sql_statements_total").await? - statements_before;
    let turns = server.metric(&http, "admission_turns_total").await? - turns_before;
    let messages = record.messages.load(Ordering::Relaxed);
    // Everyone still in line is listening before the probe.
    while record.settled.load(Ordering::Relaxed) < size.fans && record.since_start() < SALE_DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listening = server.metric(&http, "queue_subscribers").await?;
    // Small moves are told at most 30 s late: let those pass, so that the
    // probe times its own turn alone.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let rss_listening = server.rss_kib();

    report_sale(
        &rush,
        &size,
        arrivals_sent,
        sold_out_after,
        statements,
        turns,
    );
    println!(
        "    websocket messages received until sold out: {messages} ({:.1} per fan)",
        messages as f64 / size.fans as f64
    );
    println!(
        "    {}",
        cpu_of_sale
            .per_op(record.seats_sold.load(Ordering::Relaxed).max(1))
            .replace("per op", "per seat sold (arrivals and fan-out included)")
    );
    println!(
        "    server RSS: {} MiB before the websockets, {} MiB with {listening} subscribers on {socket_count} sockets: {:.1} KiB per subscriber",
        rss_before / 1024,
        rss_listening / 1024,
        rss_listening.saturating_sub(rss_before) as f64 / listening.max(1) as f64
    );

    probe_fan_out(&db, &record, listening).await?;
    write_timeline(&record)?;
    let violations = run_check(&db.url, &settings)?;
    println!("    check: {violations}");
    record.finished.store(true, Ordering::Relaxed);
    drop(rush);
    drop(server);
    db.drop_database().await?;
    Ok(())
}

fn report_sale(
    rush: &Rush,
    size: &Size,
    arrivals_sent: Duration,
    sold_out_after: Duration,
    statements: u64,
    turns: u64,
) {
    let record = &rush.record;
    let sold = record.seats_sold.load(Ordering::Relaxed);
    let admitted = record.admitted.lock().unwrap().len();
    let arrived = record.arrived.lock().unwrap().len();
    // The settings let the first MAX_ACTIVE fans in the moment they arrive,
    // so the sale can end as soon as the fan who buys its last seat has
    // arrived: the seats-th fan, at the arrival rate.
    let ideal = size
        .arrival
        .mul_f64(size.seats().min(size.fans) as f64 / size.fans as f64);
    println!(
        "sold out: {sold} of {} seats after {:.2} s from the first arrival (ideal under these settings: {:.2} s, when the {}th fan arrives; {:.1}×)",
        size.seats(),
        sold_out_after.as_secs_f64(),
        ideal.as_secs_f64(),
        size.seats(),
        sold_out_after.as_secs_f64() / ideal.as_secs_f64()
    );
    println!(
        "    arrivals sent in {:.2} s; {arrived} tokens issued; {admitted} fans admitted by the time the sale ended: {:.0} admissions/s",
        arrivals_sent.as_secs_f64(),
        admitted as f64 / sold_out_after.as_secs_f64()
    );
    println!(
        "    {:.2} SQL statements per seat sold ({statements} in all, every arrival included); {turns} admission turns",
        statements as f64 / sold.max(1) as f64
    );
    println!("    operation                      count      p50 ms   p99 ms");
    for (operation, latencies) in record.latencies.lock().unwrap().iter_mut() {
        latencies.sort_unstable();
        let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        println!(
            "    {operation:<28} {:>8} {:>10.2} {:>8.2}",
            latencies.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3
        );
    }
    let answers = record.answers.lock().unwrap();
    let errors: Vec<String> = answers
        .iter()
        .filter(|((_, code), _)| code != "ok")
        .map(|((operation, code), count)| format!("{operation} {code}: {count}"))
        .collect();
    println!(
        "    errors by code: {}",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    let outcomes = record.outcomes.lock().unwrap();
    println!("    fans ended so far: {outcomes:?}");
}

/// Frees every ACTIVE slot with everyone still in line subscribed: the next
/// turn admits MAX_ACTIVE fans and moves every other one's position.
async fn probe_fan_out(db: &BenchDb, record: &Record, listening: u64) -> BenchResult<()> {
    record.probing.store(true, Ordering::Relaxed);
    let freed_at = Instant::now();
    db.execute("UPDATE queue_tokens SET expires_at = UTC_TIMESTAMP(6) WHERE status = 'ACTIVE'")
        .await?;
    let mut heard_so_far = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3)
        && freed_at.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let heard = record.heard.lock().unwrap().len();
        if heard != heard_so_far {
            heard_so_far = heard;
            quiet_since = Instant::now();
        }
    }
    record.probing.store(false, Ordering::Relaxed);
    let heard = record.heard.lock().unwrap();
    let (Some(first), Some(last)) = (heard.iter().min(), heard.iter().max()) else {
        return Err("no subscriber heard the admission turn".into());
    };
    println!(
        "fan-out: slots freed with {listening} subscribed; {} states heard, the first {:.0} ms after the freeing, the last {:.0} ms after the first (the turn comes within ADMIT_INTERVAL_MS/2)",
        heard.len(),
        first.duration_since(freed_at).as_secs_f64() * 1e3,
        last.duration_since(*first).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Seconds since the first arrival of every arrival, admission and sale.
fn write_timeline(record: &Record) -> BenchResult<()> {
    let mut csv = String::from("event,seconds\n");
    for (event, series) in [
        ("arrived", &record.arrived),
        ("admitted", &record.admitted),
        ("sold", &record.sold),
    ] {
        let mut times = series.lock().unwrap().clone();
        times.sort_unstable();
        for at in times {
            csv.push_str(&format!("{event},{:.4}\n", at.as_secs_f64()));
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-rush.csv");
    std::fs::write(path, csv)?;
    println!("    timeline: {path}");
    Ok(())
}
