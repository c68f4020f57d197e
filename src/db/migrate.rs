//! Runs the migrations in `migrations/` one statement at a time, under the
//! startup lease, so that servers started together on several database
//! nodes migrate once, and a migration a crash left half done is resumed.
//!
//! Diesel's runner sends a migration's file as one batch and records it only
//! when the whole batch succeeded. MySQL commits each DDL statement on its
//! own, so a process that dies mid-file leaves some statements applied and
//! none recorded, and every later run trips over the first of them ("Table
//! 'users' already exists"). Here the statements of a file run one by one,
//! and after each the count done is recorded
//! (`__ticket_reservation_migration_progress`); a later run starts from that
//! count. Only the one statement that was running when the process died can
//! have happened unrecorded; run again, it finds its work done (the table,
//! column, key or constraint exists, the row is there), which counts as
//! applied. (Re-running the whole file would not do: a file that drops a
//! constraint and then adds it back with a new column would, re-run, drop
//! it again and then skip the add as "column exists".) The record of
//! applied versions stays Diesel's own `__diesel_schema_migrations`, so
//! databases migrated before this runner, and the Diesel CLI, agree with it.

use std::collections::HashSet;

use diesel::QueryableByName;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Integer, Text, Unsigned};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

use super::lease::Lease;
use crate::error::{AppError, AppResult};

/// One `migrations/<name>/up.sql`, embedded by `build.rs`.
pub struct MigrationFile {
    pub name: &'static str,
    pub up: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

impl MigrationFile {
    /// Diesel's version of a migration: the digits of its name's date part
    /// (`2026-11-23-000001_users` is `20261123000001`).
    pub fn version(&self) -> String {
        let date_part = self.name.split('_').next().unwrap_or(self.name);
        date_part.chars().filter(char::is_ascii_digit).collect()
    }

    /// The file's statements, without comment lines. Migrations here end
    /// each statement with `;` at the end of a line and put no `;` inside one.
    pub fn statements(&self) -> Vec<String> {
        let code: String = self
            .up
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .map(|line| format!("{line}\n"))
            .collect();
        code.split(";\n")
            .map(str::trim)
            .filter(|statement| !statement.is_empty())
            .map(|statement| statement.trim_end_matches(';').to_owned())
            .collect()
    }
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = Text)]
    version: String,
}

/// Applies every migration not yet recorded, in order, and answers how many
/// ran, while `lease` (the startup lease) is held.
pub async fn run_pending(conn: &mut AsyncMysqlConnection, lease: &Lease) -> AppResult<usize> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations ( \
             version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    )
    .await?;
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS __ticket_reservation_migration_progress ( \
             version VARCHAR(50) PRIMARY KEY NOT NULL, \
             statements_done INT UNSIGNED NOT NULL)",
    )
    .await?;
    let applied: HashSet<String> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load::<AppliedVersion>(conn)
            .await?
            .into_iter()
            .map(|row| row.version)
            .collect();
    let mut ran = 0;
    for file in MIGRATION_FILES {
        let version = file.version();
        if applied.contains(&version) {
            continue;
        }
        apply(conn, file, &version, lease).await?;
        diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES (?)")
            .bind::<Text, _>(&version)
            .execute(conn)
            .await?;
        diesel::sql_query("DELETE FROM __ticket_reservation_migration_progress WHERE version = ?")
            .bind::<Text, _>(&version)
            .execute(conn)
            .await?;
        ran += 1;
    }
    Ok(ran)
}

#[derive(QueryableByName)]
struct Progress {
    #[diesel(sql_type = Unsigned<Integer>)]
    statements_done: u32,
}

/// Runs the statements of `file` that its recorded progress says are not
/// done yet, recording each as it completes.
async fn apply(
    conn: &mut AsyncMysqlConnection,
    file: &MigrationFile,
    version: &str,
    lease: &Lease,
) -> AppResult<()> {
    let progress: Vec<Progress> = diesel::sql_query(
        "SELECT statements_done FROM __ticket_reservation_migration_progress WHERE version = ?",
    )
    .bind::<Text, _>(version)
    .load(conn)
    .await?;
    let done = <[Progress]>::first(&progress).map_or(0, |row| row.statements_done as usize);
    // With progress recorded, only the statement that was running when the
    // last run stopped can have happened unrecorded. Without any (a file
    // interrupted before this runner kept counts), any may have.
    let unknown_before = progress.is_empty();
    for (index, statement) in file.statements().into_iter().enumerate().skip(done) {
        lease.still_held()?;
        let may_be_done = unknown_before || index == done;
        match conn.batch_execute(&statement).await {
            Ok(()) => {}
            Err(error) if may_be_done && found_done(&statement, &error) => {
                tracing::info!(
                    migration = file.name,
                    reason = %error,
                    "a migration statement found its work done (resuming an interrupted migration)"
                );
            }
            Err(error) => {
                let error = AppError::Database(error);
                // Rolled back by the database (on Galera, a DDL statement
                // meeting another node's work): the caller starts again.
                if error.is_retryable() {
                    return Err(error);
                }
                return Err(AppError::internal(format!(
                    "migration {} failed: {}",
                    file.name,
                    error.detail()
                )));
            }
        }
        diesel::sql_query(
            "INSERT INTO __ticket_reservation_migration_progress (version, statements_done) \
             VALUES (?, ?) ON DUPLICATE KEY UPDATE statements_done = VALUES(statements_done)",
        )
        .bind::<Text, _>(version)
        .bind::<Unsigned<Integer>, _>(index as u32 + 1)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Whether a statement failed only because what it makes is already there
/// (or what it drops is already gone): MySQL's and MariaDB's messages for
/// errors 1050, 1060, 1061, 1091, 1826 and 1005 with errno 121, and a duplicate row (1062) from
/// an `INSERT` (from an `ALTER` it means data that breaks a new unique key,
/// which must stop the migration).
pub fn found_done(statement: &str, error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            statement.trim_start().starts_with("INSERT")
        }
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            (message.starts_with("Table '") && message.ends_with("' already exists"))
                || message.starts_with("Duplicate column name")
                || message.starts_with("Duplicate key name")
                || (message.starts_with("Duplicate ") && message.contains("constraint name"))
                || (message.starts_with("Can't DROP") && message.contains("check that"))
                // A foreign key whose name is taken (InnoDB's errno 121).
                || (message.starts_with("Can't create table") && message.contains("errno: 121"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_folder_is_embedded_in_order() {
        let mut on_disk: Vec<String> = std::fs::read_dir("migrations")
            .expect("run from the crate root")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = MIGRATION_FILES.iter().map(|file| file.name).collect();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn versions_are_diesels() {
        let first = &MIGRATION_FILES[0];
        assert_eq!(first.name, "2026-11-23-000001_users_and_wallet");
        assert_eq!(first.version(), "20261123000001");
    }

    #[test]
    fn statements_are_split_without_comments() {
        let queue = MIGRATION_FILES
            .iter()
            .find(|file| file.name.ends_with("_queue"))
            .expect("the queue migration");
        let statements = queue.statements();
        assert_eq!(statements.len(), 3, "{statements:#?}");
        assert!(statements[1].starts_with("INSERT INTO queue_state"));
        for file in MIGRATION_FILES {
            for statement in file.statements() {
                assert!(!statement.contains("--"), "{}: {statement}", file.name);
                assert!(!statement.ends_with(';'), "{}: {statement}", file.name);
            }
        }
    }
}
