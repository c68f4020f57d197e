//! Column types Diesel does not map for MySQL on its own.

use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::mysql::{Mysql, MysqlValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Binary;
use uuid::Uuid;

/// A UUID stored as `BINARY(16)` (Diesel's own UUID support is Postgres-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = Binary)]
pub struct DbUuid(pub Uuid);

impl ToSql<Binary, Mysql> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Binary, Mysql> for DbUuid {
    fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(Uuid::from_slice(value.as_bytes())?))
    }
}

impl From<Uuid> for DbUuid {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl From<DbUuid> for Uuid {
    fn from(id: DbUuid) -> Self {
        id.0
    }
}

/// Maps a fieldless enum to the `VARCHAR` values a `CHECK` constraint allows,
/// so status columns read as words in SQL and as types in Rust. The enum must
/// derive `AsExpression` and `FromSqlRow` with `sql_type = Varchar`.
#[macro_export]
macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Varchar, diesel::mysql::Mysql> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::mysql::Mysql>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Varchar, diesel::mysql::Mysql>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Varchar, diesel::mysql::Mysql> for $name {
            fn from_sql(value: diesel::mysql::MysqlValue<'_>) -> diesel::deserialize::Result<Self> {
                let bytes = value.as_bytes();
                $(
                    if bytes == $text.as_bytes() {
                        return Ok(Self::$variant);
                    }
                )+
                Err(format!(
                    "unexpected {} value {:?}",
                    stringify!($name),
                    String::from_utf8_lossy(bytes)
                )
                .into())
            }
        }
    };
}
