//! The users' `subject` column: which user a JWT's subject is.

use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::DbUuid;
use crate::db::schema::users;

pub async fn user_of_subject(
    conn: &mut AsyncMysqlConnection,
    subject: &str,
) -> QueryResult<Option<Uuid>> {
    users::table
        .filter(users::subject.eq(subject))
        .select(users::id)
        .first::<DbUuid>(conn)
        .await
        .optional()
        .map(|found| found.map(|id| id.0))
}

/// These users that exist, each with its subject if it has one.
pub async fn subjects_of(
    conn: &mut AsyncMysqlConnection,
    ids: &[DbUuid],
) -> QueryResult<Vec<(DbUuid, Option<String>)>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::subject))
        .load(conn)
        .await
}

/// The users of these subjects that have one, as (subject, user).
pub async fn users_of_subjects(
    conn: &mut AsyncMysqlConnection,
    subjects: &[String],
) -> QueryResult<Vec<(String, Uuid)>> {
    let found: Vec<(Option<String>, DbUuid)> = users::table
        .filter(users::subject.eq_any(subjects))
        .select((users::subject, users::id))
        .load(conn)
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|(subject, id)| subject.map(|subject| (subject, id.0)))
        .collect())
}
