//! `schema.graphql` is the code's schema, byte for byte, and the Diesel
//! schema file matches what the migrations build.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod common;

use std::collections::BTreeMap;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;

#[test]
fn schema_graphql_is_what_print_schema_prints() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-reservation"))
        .arg("print-schema")
        .output()
        .expect("run print-schema");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        printed == committed,
        "schema.graphql is stale: run `cargo run -- print-schema > schema.graphql`"
    );
    assert_eq!(printed, ticket_reservation::graphql::sdl());
}

/// A column: its name, its Diesel type, its `max_length` if any.
type ColumnShape = (String, String, Option<u64>);

/// `table -> columns`, as src/db/schema.rs declares them.
fn diesel_tables() -> BTreeMap<String, Vec<ColumnShape>> {
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/db/schema.rs")).unwrap();
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, Vec<ColumnShape>)> = None;
    let mut max_length = None;
    for line in source.lines().map(str::trim) {
        if let Some((name, _)) = line
            .split_once(" (")
            .filter(|_| line.ends_with('{') && current.is_none())
        {
            current = Some((name.to_owned(), Vec::new()));
        } else if let Some(length) = line.strip_prefix("#[max_length = ") {
            max_length = length.trim_end_matches(']').parse().ok();
        } else if let (Some((_, columns)), Some((column, kind))) =
            (current.as_mut(), line.split_once(" -> "))
        {
            columns.push((
                column.to_owned(),
                kind.trim_end_matches(',').to_owned(),
                max_length.take(),
            ));
        } else if line == "}"
            && let Some((name, columns)) = current.take()
        {
            tables.insert(name, columns);
        }
    }
    tables
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    column_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    max_length: Option<i64>,
}

/// How `diesel print-schema` names a MySQL column type.
fn diesel_type(column: &Column) -> String {
    let base = column.column_type.split('(').next().unwrap_or_default();
    let unsigned = column.column_type.ends_with("unsigned");
    let kind = match base {
        // MySQL's BOOLEAN is TINYINT(1), which print-schema calls Bool.
        "tinyint" if column.column_type == "tinyint(1)" => "Bool",
        "bigint" => "Bigint",
        "int" => "Integer",
        "tinyint" => "Tinyint",
        "binary" => "Binary",
        "varbinary" => "Varbinary",
        "varchar" => "Varchar",
        "decimal" => "Decimal",
        "datetime" => "Datetime",
        other => panic!("no mapping for {other}"),
    };
    let kind = if unsigned {
        format!("Unsigned<{kind}>")
    } else {
        kind.to_owned()
    };
    if column.is_nullable == "YES" {
        format!("Nullable<{kind}>")
    } else {
        kind
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diesel_schema_matches_the_migrated_database() {
    let db = common::TestDb::new().await;
    let mut conn = db.connect().await;
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, COLUMN_TYPE AS column_type, \
                IS_NULLABLE AS is_nullable, CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED) AS max_length \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE '\\_\\_%' \
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut database: BTreeMap<String, Vec<ColumnShape>> = BTreeMap::new();
    for column in &columns {
        // print-schema writes max_length for text and binary columns alike.
        let length = column.max_length.filter(|_| {
            column.column_type.contains("char") || column.column_type.contains("binary")
        });
        let length = length.filter(|_| !column.column_type.starts_with("binary"));
        database
            .entry(column.table_name.clone())
            .or_default()
            .push((
                column.column_name.clone(),
                diesel_type(column),
                length.map(|l| l as u64),
            ));
    }
    let declared = diesel_tables();
    assert_eq!(
        declared.keys().collect::<Vec<_>>(),
        database.keys().collect::<Vec<_>>(),
        "tables"
    );
    for (table, columns) in &declared {
        let strip = |cols: &Vec<ColumnShape>| -> Vec<(String, String)> {
            cols.iter()
                .map(|(name, kind, _)| (name.clone(), kind.clone()))
                .collect()
        };
        assert_eq!(
            strip(columns),
            strip(&database[table]),
            "columns of {table}"
        );
        let lengths = |cols: &Vec<ColumnShape>| -> Vec<Option<u64>> {
            cols.iter()
                .filter(|(_, kind, _)| kind.contains("char"))
                .map(|(_, _, l)| *l)
                .collect()
        };
        assert_eq!(
            lengths(columns),
            lengths(&database[table]),
            "text lengths of {table}"
        );
    }
}
