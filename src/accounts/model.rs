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
