//! `ticket-reservation check`: reads the database and reports every broken
//! invariant. The concurrency tests end by running it; operators can run it
//! against production at any time (it only reads).

use chrono::NaiveDateTime;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Datetime, Text, Unsigned};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use futures_util::FutureExt;

use crate::db::{self, DbPool};
use crate::error::AppResult;

/// One broken rule, with the rows that break it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

#[derive(QueryableByName)]
struct Finding {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// Each rule is a query that returns one line per offending row.
const RULES: &[(&str, &str)] = &[
    (
        "a SOLD seat has exactly one PAID reservation",
        "SELECT CONCAT('seat ', s.id, ' is SOLD with ', COUNT(r.id), ' PAID reservations') AS detail \
         FROM seats s LEFT JOIN reservations r ON r.seat_id = s.id AND r.status = 'PAID' \
         WHERE s.status = 'SOLD' GROUP BY s.id HAVING COUNT(r.id) <> 1",
    ),
    (
        "a PAID reservation's seat is SOLD",
        "SELECT CONCAT('reservation ', HEX(r.id), ' is PAID but seat ', s.id, ' is ', s.status) AS detail \
         FROM reservations r JOIN seats s ON s.id = r.seat_id \
         WHERE r.status = 'PAID' AND s.status <> 'SOLD'",
    ),
    (
        "a PAID reservation belongs to a payment of its user",
        "SELECT CONCAT('reservation ', HEX(r.id), ' is PAID without a payment of its user') AS detail \
         FROM reservations r LEFT JOIN payments p ON p.id = r.payment_id \
         WHERE r.status = 'PAID' AND (p.id IS NULL OR p.user_id <> r.user_id)",
    ),
    (
        "a payment's amount is the sum of its reservations",
        "SELECT CONCAT('payment ', HEX(p.id), ' is ', p.amount, ' but its reservations sum to ', \
                COALESCE(SUM(r.price), 0)) AS detail \
         FROM payments p LEFT JOIN reservations r \
              ON r.payment_id = p.id AND r.status IN ('PAID', 'REFUNDED') \
         GROUP BY p.id, p.amount HAVING p.amount <> COALESCE(SUM(r.price), 0)",
    ),
    (
        "a payment has one PAYMENT balance entry of minus its amount",
        "SELECT CONCAT('payment ', HEX(p.id), ' of ', p.amount, ' has ', COUNT(e.id), \
                ' PAYMENT entries summing to ', COALESCE(SUM(e.amount), 0)) AS detail \
         FROM payments p LEFT JOIN balance_entries e ON e.payment_id = p.id AND e.kind = 'PAYMENT' \
         GROUP BY p.id, p.amount HAVING COUNT(e.id) <> 1 OR COALESCE(SUM(e.amount), 0) <> -p.amount",
    ),
    (
        "a balance equals the sum of its entries",
        "SELECT CONCAT('user ', HEX(u.id), ' has balance ', u.balance, ' but entries sum to ', \
                COALESCE(SUM(e.amount), 0)) AS detail \
         FROM users u LEFT JOIN balance_entries e ON e.user_id = u.id \
         GROUP BY u.id, u.balance HAVING u.balance <> COALESCE(SUM(e.amount), 0)",
    ),
    (
        "the newest balance entry's balanceAfter equals the balance",
        "SELECT CONCAT('user ', HEX(u.id), ' has balance ', u.balance, ' but the newest entry says ', \
                e.balance_after) AS detail \
         FROM users u JOIN balance_entries e ON e.id = \
              (SELECT MAX(latest.id) FROM balance_entries latest WHERE latest.user_id = u.id) \
         WHERE e.balance_after <> u.balance",
    ),
    (
        "a balance is not negative, and above 1,000,000,000.00 only through refunds",
        "SELECT CONCAT('user ', HEX(u.id), ' has balance ', u.balance) AS detail \
         FROM users u WHERE u.balance < 0 OR (u.balance > 1000000000.00 AND NOT EXISTS \
              (SELECT 1 FROM balance_entries e WHERE e.user_id = u.id AND e.kind = 'REFUND'))",
    ),
    (
        "a HELD seat is held by a reservation of that seat",
        "SELECT CONCAT('seat ', s.id, ' is HELD by ', COALESCE(HEX(s.held_by_reservation_id), 'nobody'), \
                ', which is not a hold of this seat') AS detail \
         FROM seats s LEFT JOIN reservations r ON r.id = s.held_by_reservation_id \
         WHERE s.status = 'HELD' AND (r.id IS NULL OR r.seat_id <> s.id OR r.status <> 'HELD')",
    ),
    (
        "a REFUNDED reservation has exactly one REFUND entry, of its price",
        "SELECT CONCAT('reservation ', HEX(r.id), ' of ', r.price, ' is REFUNDED with ', COUNT(e.id), \
                ' REFUND entries summing to ', COALESCE(SUM(e.amount), 0)) AS detail \
         FROM reservations r LEFT JOIN balance_entries e ON e.reservation_id = r.id AND e.kind = 'REFUND' \
         WHERE r.status = 'REFUNDED' GROUP BY r.id, r.price \
         HAVING COUNT(e.id) <> 1 OR COALESCE(SUM(e.amount), 0) <> r.price",
    ),
    (
        "a REFUND entry refunds a REFUNDED reservation of its user and payment",
        "SELECT CONCAT('entry ', e.id, ' refunds reservation ', HEX(r.id), ', which is ', r.status) AS detail \
         FROM balance_entries e JOIN reservations r ON r.id = e.reservation_id \
         WHERE e.kind = 'REFUND' AND (r.status <> 'REFUNDED' OR r.user_id <> e.user_id \
               OR r.payment_id <> e.payment_id)",
    ),
    (
        "a cancelled date has no HELD or SOLD seat and no HELD or PAID reservation",
        "SELECT CONCAT('date ', d.id, ' is cancelled but seat ', s.id, ' is ', s.status, \
                COALESCE(CONCAT(' with reservation ', HEX(r.id), ' ', r.status), '')) AS detail \
         FROM concert_dates d JOIN seats s ON s.concert_date_id = d.id \
         LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') \
         WHERE d.cancelled_at IS NOT NULL AND (s.status IN ('HELD', 'SOLD') OR r.id IS NOT NULL)",
    ),
    (
        "a date's revenue, the PAID prices, is the price of its SOLD seats",
        "SELECT CONCAT('date ', s.concert_date_id, ' has PAID reservations of ', \
                COALESCE(SUM(CASE WHEN r.status = 'PAID' THEN r.price END), 0), ' but SOLD seats of ', \
                COALESCE(SUM(CASE WHEN s.status = 'SOLD' AND r.status = 'PAID' THEN s.price END), 0), \
                ' in ', COUNT(DISTINCT CASE WHEN s.status = 'SOLD' THEN s.id END), ' seats') AS detail \
         FROM seats s LEFT JOIN reservations r ON r.seat_id = s.id AND r.status = 'PAID' \
         GROUP BY s.concert_date_id \
         HAVING COALESCE(SUM(r.price), 0) <> COALESCE(SUM(CASE WHEN s.status = 'SOLD' THEN s.price END), 0)",
    ),
    (
        "the line's counter numbers every token: none above it",
        "SELECT CONCAT('token ', t.seq, ' is numbered above the ', q.last_issued_seq, \
                ' tokens the line has issued') AS detail \
         FROM queue_tokens t JOIN queue_state q ON t.seq > q.last_issued_seq LIMIT 100",
    ),
    (
        "the line's counter numbers every token: one token for each number, no gaps",
        "SELECT CONCAT('the line has issued ', q.last_issued_seq, ' tokens but ', COUNT(t.seq), \
                ' are stored at or below that number') AS detail \
         FROM queue_state q LEFT JOIN queue_tokens t ON t.seq <= q.last_issued_seq \
         GROUP BY q.last_issued_seq HAVING COUNT(t.seq) <> q.last_issued_seq",
    ),
    (
        "tokens after the admission cursor are WAITING, tokens up to it are not",
        "SELECT CONCAT('token ', t.seq, ' is ', t.status, ' with the line admitted through ', \
                q.admitted_through_seq) AS detail \
         FROM queue_tokens t JOIN queue_state q \
              ON (t.seq > q.admitted_through_seq AND t.status <> 'WAITING') \
              OR (t.seq <= q.admitted_through_seq AND t.status = 'WAITING') \
         LIMIT 100",
    ),
    (
        "one user per JWT subject",
        "SELECT CONCAT('subject ', subject, ' has ', COUNT(*), ' users') AS detail \
         FROM users WHERE subject IS NOT NULL GROUP BY subject HAVING COUNT(*) > 1",
    ),
];

/// The settings whose limits the rows must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_active_tokens: u32,
    pub max_tickets_per_user: u32,
}

impl Limits {
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            max_active_tokens: config.max_active_tokens,
            max_tickets_per_user: config.max_tickets_per_user,
        }
    }
}

pub async fn find_violations(
    pool: &DbPool,
    limits: Limits,
    now: NaiveDateTime,
) -> AppResult<Vec<Violation>> {
    db::run(pool, move |conn| violations_on(conn, limits, now).boxed()).await
}

async fn violations_on(
    conn: &mut AsyncMysqlConnection,
    limits: Limits,
    now: NaiveDateTime,
) -> AppResult<Vec<Violation>> {
    let max_active_tokens = limits.max_active_tokens;
    let mut violations = Vec::new();
    for (rule, sql) in RULES {
        let findings: Vec<Finding> = diesel::sql_query(*sql).load(conn).await?;
        violations.extend(findings.into_iter().map(|finding| Violation {
            rule,
            detail: finding.detail,
        }));
    }
    let miscounted: Vec<Finding> = diesel::sql_query(
        "SELECT CONCAT('token ', t.seq, ' counts ', t.live_holds, ' live holds but its user has ', \
                COUNT(r.id)) AS detail \
         FROM queue_tokens t LEFT JOIN reservations r \
              ON r.user_id = t.user_id AND r.status = 'HELD' AND r.held_until > ? \
         WHERE t.status = 'ACTIVE' AND t.expires_at > ? \
         GROUP BY t.seq, t.live_holds HAVING t.live_holds <> COUNT(r.id)",
    )
    .bind::<Datetime, _>(now)
    .bind::<Datetime, _>(now)
    .load(conn)
    .await?;
    violations.extend(miscounted.into_iter().map(|finding| Violation {
        rule: "an ACTIVE token counts its user's live holds",
        detail: finding.detail,
    }));
    let over_limit: Vec<Finding> = diesel::sql_query(
        "SELECT CONCAT(COUNT(*), ' tokens are ACTIVE, above MAX_ACTIVE_TOKENS=', ?, \
                ' and the organizer limit') AS detail \
         FROM queue_tokens WHERE status = 'ACTIVE' AND expires_at > ? \
         HAVING COUNT(*) > GREATEST(?, COALESCE((SELECT max_active_tokens FROM queue_state), 0))",
    )
    .bind::<Unsigned<BigInt>, _>(u64::from(max_active_tokens))
    .bind::<Datetime, _>(now)
    .bind::<Unsigned<BigInt>, _>(u64::from(max_active_tokens))
    .load(conn)
    .await?;
    violations.extend(over_limit.into_iter().map(|finding| Violation {
        rule: "no more tokens are ACTIVE than MAX_ACTIVE_TOKENS",
        detail: finding.detail,
    }));
    let over_tickets: Vec<Finding> = diesel::sql_query(
        "SELECT CONCAT('user ', HEX(r.user_id), ' holds or owns ', COUNT(*), ' seats of date ', \
                s.concert_date_id, ', above MAX_TICKETS_PER_USER=', ?) AS detail \
         FROM reservations r JOIN seats s ON s.id = r.seat_id \
         WHERE r.status = 'PAID' OR (r.status = 'HELD' AND r.held_until > ?) \
         GROUP BY r.user_id, s.concert_date_id HAVING COUNT(*) > ?",
    )
    .bind::<Unsigned<BigInt>, _>(u64::from(limits.max_tickets_per_user))
    .bind::<Datetime, _>(now)
    .bind::<Unsigned<BigInt>, _>(u64::from(limits.max_tickets_per_user))
    .load(conn)
    .await?;
    violations.extend(over_tickets.into_iter().map(|finding| Violation {
        rule: "no user holds or owns more seats of a date than MAX_TICKETS_PER_USER",
        detail: finding.detail,
    }));
    Ok(violations)
}
