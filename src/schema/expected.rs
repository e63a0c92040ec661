//! The tables the functions write, as the original's migrations leave them,
//! and the check that a database has them. Only what the functions depend
//! on is compared: column types, nullability, defaults, primary keys, and
//! unique keys (an extra one would refuse rows the original accepts).
//! Column order and index names are free; extra columns are allowed when
//! they cannot make an insert fail (nullable or with a default).

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    /// As `format_type` prints it.
    pub sql_type: &'static str,
    pub not_null: bool,
    /// The functions rely on the default (`bigserial` ids, `count`).
    pub default: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub schema: &'static str,
    pub name: &'static str,
    pub columns: &'static [Column],
    pub primary_key: &'static [&'static str],
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

const TEXT: &str = "text";
const TS: &str = "timestamp without time zone";

const fn col(name: &'static str, sql_type: &'static str, not_null: bool) -> Column {
    Column {
        name,
        sql_type,
        not_null,
        default: false,
    }
}

const fn serial(name: &'static str) -> Column {
    Column {
        name,
        sql_type: "bigint",
        not_null: true,
        default: true,
    }
}

pub const TABLES: &[Table] = &[
    Table {
        schema: "audit",
        name: "audit_events",
        columns: &[
            col("event_id", TEXT, true),
            col("time_stamp", TS, true),
            col("originating_service", TEXT, true),
            col("session_id", TEXT, false),
            col("event_type", TEXT, true),
            col("details", "jsonb", false),
        ],
        primary_key: &["event_id", "time_stamp"],
    },
    Table {
        schema: "billing",
        name: "billing_events",
        columns: &[
            col("time_stamp", TS, true),
            col("session_id", TEXT, true),
            col("hashed_persistent_id", TEXT, true),
            col("request_id", TEXT, true),
            col("idp_entity_id", TEXT, true),
            col("minimum_level_of_assurance", TEXT, true),
            col("provided_level_of_assurance", TEXT, true),
            col("event_id", TEXT, true),
            col("transaction_entity_id", TEXT, false),
            col("preferred_level_of_assurance", TEXT, false),
        ],
        primary_key: &["event_id"],
    },
    Table {
        schema: "billing",
        name: "fraud_events",
        columns: &[
            col("time_stamp", TS, true),
            col("session_id", TEXT, true),
            col("hashed_persistent_id", TEXT, true),
            col("entity_id", TEXT, true),
            col("fraud_event_id", TEXT, true),
            col("fraud_indicator", TEXT, true),
            col("event_id", TEXT, true),
            col("transaction_entity_id", TEXT, true),
            col("request_id", TEXT, false),
        ],
        primary_key: &["event_id"],
    },
    Table {
        schema: "idp_data",
        name: "upload_sessions",
        columns: &[
            serial("id"),
            col("time_stamp", TS, true),
            col("source_file_name", TEXT, true),
            col("idp_entity_id", TEXT, true),
            col("userid", TEXT, true),
            col("passed_validation", "boolean", true),
        ],
        primary_key: &["id"],
    },
    Table {
        schema: "idp_data",
        name: "upload_session_validation_failures",
        columns: &[
            serial("id"),
            col("upload_session_id", "bigint", true),
            col("row", "bigint", true),
            col("field", TEXT, true),
            col("message", TEXT, true),
        ],
        primary_key: &["id"],
    },
    Table {
        schema: "idp_data",
        name: "idp_fraud_events",
        columns: &[
            serial("id"),
            col("idp_entity_id", TEXT, true),
            col("idp_event_id", TEXT, true),
            col("time_stamp", TS, true),
            col("fid_code", TEXT, true),
            col("request_id", TEXT, true),
            col("pid", TEXT, true),
            col("client_ip_address", TEXT, true),
            col("contra_score", "integer", true),
            col("upload_session_id", "bigint", true),
        ],
        primary_key: &["id"],
    },
    Table {
        schema: "idp_data",
        name: "idp_fraud_event_contraindicators",
        columns: &[
            col("idp_fraud_events_id", "bigint", true),
            col("contraindicator_code", TEXT, true),
            Column {
                name: "count",
                sql_type: "integer",
                not_null: true,
                default: true,
            },
        ],
        primary_key: &["idp_fraud_events_id", "contraindicator_code"],
    },
];

/// Every way the database differs from [`TABLES`], one line each; empty when
/// the functions can run on it.
pub async fn differences(
    client: &impl GenericClient,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut found = Vec::new();
    for table in TABLES {
        table_differences(client, table, &mut found).await?;
    }
    Ok(found)
}

async fn table_differences(
    client: &impl GenericClient,
    table: &Table,
    found: &mut Vec<String>,
) -> Result<(), tokio_postgres::Error> {
    let name = table.qualified();
    let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 2] =
        [(&table.schema, Type::TEXT), (&table.name, Type::TEXT)];
    let columns = client
        .query_typed(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
               AND a.attnum > 0 AND NOT a.attisdropped",
            &params,
        )
        .await?;
    if columns.is_empty() {
        found.push(format!("{name}: table missing"));
        return Ok(());
    }
    let actual: Vec<(String, String, bool, bool)> = columns
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    for want in table.columns {
        let Some((_, sql_type, not_null, default)) = actual.iter().find(|c| c.0 == want.name)
        else {
            found.push(format!("{name}.{}: column missing", want.name));
            continue;
        };
        if sql_type != want.sql_type {
            found.push(format!(
                "{name}.{}: type {sql_type}, expected {}",
                want.name, want.sql_type
            ));
        }
        if *not_null != want.not_null {
            found.push(format!(
                "{name}.{}: {}, expected {}",
                want.name,
                nullability(*not_null),
                nullability(want.not_null)
            ));
        }
        if want.default && !default {
            found.push(format!("{name}.{}: no default, expected one", want.name));
        }
    }
    for (column, _, not_null, default) in &actual {
        let known = table.columns.iter().any(|c| c.name == column);
        if !known && *not_null && !default {
            found.push(format!(
                "{name}.{column}: extra NOT NULL column without a default (inserts would fail)"
            ));
        }
    }

    let keys = client
        .query_typed(
            "SELECT i.indisprimary, array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique
             GROUP BY i.indexrelid, i.indisprimary",
            &params,
        )
        .await?;
    let mut primary: Option<Vec<String>> = None;
    for row in &keys {
        let columns: Vec<String> = row.get(1);
        if row.get::<_, bool>(0) {
            primary = Some(columns);
        } else if columns.as_slice() != table.primary_key {
            found.push(format!(
                "{name}: unique key ({}) not in the expected schema (it would refuse rows)",
                columns.join(", ")
            ));
        }
    }
    match primary {
        Some(pk) if pk.as_slice() == table.primary_key => {}
        Some(pk) => found.push(format!(
            "{name}: primary key ({}), expected ({})",
            pk.join(", "),
            table.primary_key.join(", ")
        )),
        None => found.push(format!(
            "{name}: no primary key, expected ({})",
            table.primary_key.join(", ")
        )),
    }
    Ok(())
}

fn nullability(not_null: bool) -> &'static str {
    if not_null { "NOT NULL" } else { "nullable" }
}
