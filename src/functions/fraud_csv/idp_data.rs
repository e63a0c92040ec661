//! The `idp_data` SQL of the fraud-report upload. Like `crate::store`, every
//! statement is unnamed and explicitly typed, and rows travel as arrays, so
//! it works through poolers and costs one statement per table.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error};

use super::rows::{ReportRow, RowFailure};

type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A new upload session, not yet passed (committed on its own, so a failed
/// upload still leaves its session and failures behind, as the original did).
pub async fn create_session(
    client: &Client,
    source_file_name: &str,
    idp_entity_id: &str,
    userid: &str,
    at: NaiveDateTime,
) -> Result<i64, Error> {
    let row = client
        .query_typed_one(
            "INSERT INTO idp_data.upload_sessions
                 (time_stamp, source_file_name, idp_entity_id, userid, passed_validation)
             VALUES ($1, $2, $3, $4, false)
             RETURNING id",
            &[
                (&at, Type::TIMESTAMP),
                (&source_file_name, Type::TEXT),
                (&idp_entity_id, Type::TEXT),
                (&userid, Type::TEXT),
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// How far a session got: `None` if it does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub passed: bool,
    pub rows: i64,
    pub failures: i64,
    pub failed_rows: i64,
}

impl SessionState {
    /// Rows stored or failures recorded: nothing more to write.
    pub fn is_done(&self) -> bool {
        self.passed || self.failures > 0
    }
}

pub async fn session_state(client: &Client, session: i64) -> Result<Option<SessionState>, Error> {
    let row = client
        .query_typed_opt(
            "SELECT s.passed_validation,
                    (SELECT count(*) FROM idp_data.idp_fraud_events e WHERE e.upload_session_id = s.id),
                    (SELECT count(*) FROM idp_data.upload_session_validation_failures f
                     WHERE f.upload_session_id = s.id),
                    (SELECT count(DISTINCT f.\"row\") FROM idp_data.upload_session_validation_failures f
                     WHERE f.upload_session_id = s.id)
             FROM idp_data.upload_sessions s WHERE s.id = $1",
            &[(&session, Type::INT8)],
        )
        .await?;
    Ok(row.map(|r| SessionState {
        passed: r.get(0),
        rows: r.get(1),
        failures: r.get(2),
        failed_rows: r.get(3),
    }))
}

/// Every failing row of a session, in one statement.
pub async fn record_failures(
    client: &Client,
    session: i64,
    failures: &[RowFailure],
) -> Result<(), Error> {
    let rows: Vec<i64> = failures.iter().map(|f| f.row as i64).collect();
    let fields: Vec<&str> = failures.iter().map(|f| f.field.as_str()).collect();
    let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
    client
        .query_typed(
            "INSERT INTO idp_data.upload_session_validation_failures
                 (upload_session_id, \"row\", field, message)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[])",
            &[
                (&session, Type::INT8),
                (&rows, Type::INT8_ARRAY),
                (&fields, Type::TEXT_ARRAY),
                (&messages, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map(drop)
}

/// All fraud rows of a file and their contra-indicators, then the session
/// marked passed: one transaction, all or nothing.
pub async fn store_rows(
    client: &mut Client,
    session: i64,
    idp_entity_id: &str,
    rows: &[ReportRow],
) -> Result<(), Error> {
    let tx = client.transaction().await?;
    // Ids first, so contra-indicators can name their event without relying
    // on the order RETURNING gives rows back in.
    let count = rows.len() as i64;
    let ids: Vec<i64> = tx
        .query_typed(
            "SELECT nextval(pg_get_serial_sequence('idp_data.idp_fraud_events', 'id'))
             FROM generate_series(1, $1)",
            &[(&count, Type::INT8)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let column = |f: fn(&ReportRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let idp_event_id = column(|r| &r.idp_event_id);
    let fid_code = column(|r| &r.fid_code);
    let request_id = column(|r| &r.request_id);
    let pid = column(|r| &r.pid);
    let client_ip = column(|r| &r.client_ip_address);
    let time_stamp: Vec<NaiveDateTime> = rows.iter().map(|r| r.time_stamp).collect();
    let contra_score: Vec<i32> = rows.iter().map(|r| r.contra_score).collect();
    let params: [Param; 10] = [
        (&ids, Type::INT8_ARRAY),
        (&idp_entity_id, Type::TEXT),
        (&idp_event_id, Type::TEXT_ARRAY),
        (&time_stamp, Type::TIMESTAMP_ARRAY),
        (&fid_code, Type::TEXT_ARRAY),
        (&request_id, Type::TEXT_ARRAY),
        (&pid, Type::TEXT_ARRAY),
        (&client_ip, Type::TEXT_ARRAY),
        (&contra_score, Type::INT4_ARRAY),
        (&session, Type::INT8),
    ];
    tx.query_typed(
        "INSERT INTO idp_data.idp_fraud_events
             (id, idp_entity_id, idp_event_id, time_stamp, fid_code, request_id, pid,
              client_ip_address, contra_score, upload_session_id)
         SELECT u.id, $2, u.idp_event_id, u.time_stamp, u.fid_code, u.request_id, u.pid,
                u.client_ip_address, u.contra_score, $10
         FROM unnest($1::bigint[], $3::text[], $4::timestamp[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::int[])
              AS u(id, idp_event_id, time_stamp, fid_code, request_id, pid,
                   client_ip_address, contra_score)",
        &params,
    )
    .await?;

    // A code repeated in a row counts once per mention, as the original's
    // `count + 1` on conflict does; summed here, since one statement may
    // not update a row twice.
    let mut counts: BTreeMap<(i64, &str), i32> = BTreeMap::new();
    for (id, row) in ids.iter().zip(rows) {
        for code in &row.contra_indicators {
            *counts.entry((*id, code.as_str())).or_default() += 1;
        }
    }
    let event: Vec<i64> = counts.keys().map(|(id, _)| *id).collect();
    let code: Vec<&str> = counts.keys().map(|(_, c)| *c).collect();
    let count: Vec<i32> = counts.values().copied().collect();
    tx.query_typed(
        "INSERT INTO idp_data.idp_fraud_event_contraindicators
             (idp_fraud_events_id, contraindicator_code, count)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[])
         ON CONFLICT (idp_fraud_events_id, contraindicator_code)
         DO UPDATE SET count = idp_fraud_event_contraindicators.count + EXCLUDED.count",
        &[
            (&event, Type::INT8_ARRAY),
            (&code, Type::TEXT_ARRAY),
            (&count, Type::INT4_ARRAY),
        ],
    )
    .await?;
    tx.query_typed(
        "UPDATE idp_data.upload_sessions SET passed_validation = true WHERE id = $1",
        &[(&session, Type::INT8)],
    )
    .await?;
    tx.commit().await
}
