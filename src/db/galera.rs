//! What changes when the database is a node of a Galera cluster (MariaDB
//! Galera, Percona XtraDB Cluster): nothing in the SQL, two things in a
//! session.
//!
//! A node applies the other nodes' commits a moment after they happen, and
//! by default a read does not wait for them (`wsrep_sync_wait=0`): a user
//! registered through one node is NOT_FOUND through another for a few
//! milliseconds, a balance reads stale, a fresh token's number is above the
//! counter this node has seen. With `wsrep_sync_wait=1` every read first
//! waits until the node has applied everything committed anywhere before it
//! began (a causal read). Writes need no such wait: a conditional write
//! that ran on stale rows conflicts with the newer commit at certification,
//! fails as a deadlock, and is run again (`transaction_with_retry!`).

use diesel::QueryableByName;
use diesel::result::QueryResult;
use diesel::sql_types::Text;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

#[derive(QueryableByName)]
struct Variable {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = Variable_name)]
    name: String,
    #[diesel(sql_type = Text)]
    #[diesel(column_name = Value)]
    value: String,
}

/// Whether a node may be given work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Not a Galera node: one server, always its own primary.
    NotGalera,
    /// Part of the primary component and Synced.
    Ready,
    /// Joining, donating a state transfer, or cut off from the primary
    /// component: its answers would wait or fail ("WSREP has not yet
    /// prepared node for application use").
    NotReady(String),
}

/// What this session's node is (`wsrep_ready`, `wsrep_local_state_comment`).
pub async fn node_state(conn: &mut AsyncMysqlConnection) -> QueryResult<NodeState> {
    if !wsrep_on(conn).await? {
        return Ok(NodeState::NotGalera);
    }
    let status: Vec<Variable> = diesel::sql_query(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment')",
    )
    .load(conn)
    .await?;
    let value_of = |name: &str| {
        status
            .iter()
            .find(|row| row.name.eq_ignore_ascii_case(name))
            .map(|row| row.value.clone())
            .unwrap_or_default()
    };
    let ready = value_of("wsrep_ready");
    let state = value_of("wsrep_local_state_comment");
    Ok(if ready.eq_ignore_ascii_case("ON") && state == "Synced" {
        NodeState::Ready
    } else {
        NodeState::NotReady(format!("wsrep_ready={ready}, state {state}"))
    })
}

/// Whether this session's server replicates through Galera (`wsrep_on`).
/// MySQL without Galera has no such variable: an empty answer, so false.
pub async fn wsrep_on(conn: &mut AsyncMysqlConnection) -> QueryResult<bool> {
    let rows: Vec<Variable> = diesel::sql_query("SHOW SESSION VARIABLES LIKE 'wsrep_on'")
        .load(conn)
        .await?;
    Ok(<[Variable]>::first(&rows).is_some_and(|row| row.value.eq_ignore_ascii_case("ON")))
}

/// On a Galera node, makes every read of this session causal; elsewhere
/// does nothing (one server's reads are causal already).
pub async fn causal_reads(conn: &mut AsyncMysqlConnection) -> QueryResult<()> {
    if wsrep_on(conn).await? {
        conn.batch_execute("SET SESSION wsrep_sync_wait = 1")
            .await?;
    }
    Ok(())
}
