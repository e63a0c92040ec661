//! Writes records to PostgreSQL: one transaction per call, one statement per
//! table whatever the number of rows (columns travel as arrays and are
//! `unnest`ed), duplicates skipped by `ON CONFLICT DO NOTHING`.
//!
//! Pooler-safe: nothing outlives a transaction on the server. Statements are
//! unnamed and their parameter types are sent with them (parse, bind and
//! execute in one round trip), so no named prepared statement, session
//! setting, temp table or session lock is left for the next client of a
//! PgBouncer (transaction mode) or RDS Proxy server connection, and RDS Proxy
//! has no reason to pin the session.

use std::collections::HashSet;

use bytes::{BufMut, BytesMut};
use chrono::NaiveDateTime;
use serde_json::{Map, Value};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Row, Transaction};

use crate::database::DbError;
pub use crate::database::Store;
use crate::route::{ExtraRow, Record};

/// One insert statement with the type of each `$n`.
struct Insert {
    sql: &'static str,
    types: &'static [Type],
}

const AUDIT: Insert = Insert {
    sql: INSERT_AUDIT,
    types: &[
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TIMESTAMP_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
    ],
};

const BILLING: Insert = Insert {
    sql: INSERT_BILLING,
    types: &[
        Type::TEXT_ARRAY,
        Type::TIMESTAMP_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
    ],
};

const FRAUD: Insert = Insert {
    sql: INSERT_FRAUD,
    types: &[
        Type::TEXT_ARRAY,
        Type::TIMESTAMP_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
    ],
};

/// `details` travels as JSON text, cast to jsonb row by row: a jsonb[]
/// parameter is parsed whole, and held, while the statement is bound, which
/// measured several times the bind time of text at 10,000 rows, and a
/// slower insert overall. The stored value is the same: the same text goes
/// through the same jsonb parser.
const INSERT_AUDIT: &str = "
    INSERT INTO audit.audit_events
        (event_id, event_type, time_stamp, originating_service, session_id, details)
    SELECT event_id, event_type, time_stamp, originating_service, session_id, details::jsonb
    FROM unnest($1::text[], $2::text[], $3::timestamp[], $4::text[], $5::text[], $6::text[])
        AS r(event_id, event_type, time_stamp, originating_service, session_id, details)
    ON CONFLICT DO NOTHING
    RETURNING event_id, time_stamp";

const INSERT_BILLING: &str = "
    INSERT INTO billing.billing_events
        (event_id, time_stamp, session_id, hashed_persistent_id, request_id, idp_entity_id,
         minimum_level_of_assurance, preferred_level_of_assurance, provided_level_of_assurance,
         transaction_entity_id)
    SELECT * FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
    ON CONFLICT DO NOTHING
    RETURNING event_id";

const INSERT_FRAUD: &str = "
    INSERT INTO billing.fraud_events
        (event_id, time_stamp, session_id, hashed_persistent_id, request_id, entity_id,
         fraud_event_id, fraud_indicator, transaction_entity_id)
    SELECT * FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[])
    ON CONFLICT DO NOTHING
    RETURNING event_id";

/// Keys of the rows a call actually inserted (absent ones already existed).
#[derive(Debug, Default)]
pub struct Inserted {
    audit: HashSet<(String, NaiveDateTime)>,
    billing: HashSet<String>,
    fraud: HashSet<String>,
}

impl Inserted {
    /// True when every row of `record` was new. Each key is claimed once, so
    /// when a batch holds the same event twice the second copy is the duplicate.
    pub fn claim(&mut self, record: &Record) -> bool {
        let e = &record.event;
        let audit = self.audit.remove(&(e.event_id.clone(), e.timestamp));
        let extra = match &record.extra {
            None => true,
            Some(ExtraRow::Billing(_)) => self.billing.remove(&e.event_id),
            Some(ExtraRow::Fraud(_)) => self.fraud.remove(&e.event_id),
        };
        audit && extra
    }
}

/// The events' statements, on the connection type of `database`.
impl Store {
    /// Inserts all rows of `records` in one transaction: all or nothing.
    pub async fn insert(&mut self, records: &[&Record]) -> Result<Inserted, DbError> {
        self.run(async |client| insert(client, records).await).await
    }
}

/// The statements of [`Store::insert`]: the three tables in one transaction.
async fn insert(
    client: &mut Client,
    records: &[&Record],
) -> Result<Inserted, tokio_postgres::Error> {
    // A fixed key order keeps concurrent writers from deadlocking.
    let mut records = records.to_vec();
    records.sort_by(|a, b| {
        (&a.event.event_id, a.event.timestamp).cmp(&(&b.event.event_id, b.event.timestamp))
    });
    let audit = AuditColumns::new(&records);
    let billing = BillingColumns::new(&records);
    let fraud = FraudColumns::new(&records);

    let audit_params = audit.params();
    let tx = client.transaction().await?;
    // Issued together, the statements share network round trips.
    let (audit_rows, billing_rows, fraud_rows) = tokio::try_join!(
        run(&tx, &AUDIT, &audit_params),
        async {
            match billing.event_id.is_empty() {
                true => Ok(Vec::new()),
                false => run(&tx, &BILLING, &billing.params()).await,
            }
        },
        async {
            match fraud.event_id.is_empty() {
                true => Ok(Vec::new()),
                false => run(&tx, &FRAUD, &fraud.params()).await,
            }
        },
    )?;
    tx.commit().await?;
    Ok(Inserted {
        audit: audit_rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        billing: billing_rows.iter().map(|r| r.get(0)).collect(),
        fraud: fraud_rows.iter().map(|r| r.get(0)).collect(),
    })
}

/// Runs `insert` as an unnamed statement with its parameter types.
async fn run(
    tx: &Transaction<'_>,
    insert: &Insert,
    params: &[Param<'_>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let typed: Vec<(Param, Type)> = params
        .iter()
        .zip(insert.types)
        .map(|(p, t)| (*p, t.clone()))
        .collect();
    tx.query_typed(insert.sql, &typed).await
}

type Param<'a> = &'a (dyn ToSql + Sync);

/// A JSON object sent as text.
#[derive(Debug)]
struct JsonText<'a>(&'a Map<String, Value>);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        serde_json::to_writer(out.writer(), self.0)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT
    }

    to_sql_checked!();
}

#[derive(Default)]
struct AuditColumns<'a> {
    event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    time_stamp: Vec<NaiveDateTime>,
    originating_service: Vec<&'a str>,
    session_id: Vec<&'a str>,
    details: Vec<JsonText<'a>>,
}

impl<'a> AuditColumns<'a> {
    fn new(records: &[&'a Record]) -> Self {
        let mut c = Self::default();
        for Record { event: e, .. } in records.iter().copied() {
            c.event_id.push(&e.event_id);
            c.event_type.push(&e.event_type);
            c.time_stamp.push(e.timestamp);
            c.originating_service.push(&e.originating_service);
            c.session_id.push(&e.session_id);
            c.details.push(JsonText(&e.details));
        }
        c
    }

    fn params(&self) -> [Param<'_>; 6] {
        [
            &self.event_id,
            &self.event_type,
            &self.time_stamp,
            &self.originating_service,
            &self.session_id,
            &self.details,
        ]
    }
}

#[derive(Default)]
struct BillingColumns<'a> {
    event_id: Vec<&'a str>,
    time_stamp: Vec<NaiveDateTime>,
    session_id: Vec<&'a str>,
    hashed_persistent_id: Vec<&'a str>,
    request_id: Vec<&'a str>,
    idp_entity_id: Vec<&'a str>,
    minimum_loa: Vec<&'a str>,
    preferred_loa: Vec<Option<&'a str>>,
    provided_loa: Vec<&'a str>,
    transaction_entity_id: Vec<Option<&'a str>>,
}

impl<'a> BillingColumns<'a> {
    fn new(records: &[&'a Record]) -> Self {
        let mut c = Self::default();
        for r in records {
            let Some(ExtraRow::Billing(b)) = &r.extra else {
                continue;
            };
            c.event_id.push(&r.event.event_id);
            c.time_stamp.push(r.event.timestamp);
            c.session_id.push(&r.event.session_id);
            c.hashed_persistent_id.push(&b.hashed_persistent_id);
            c.request_id.push(&b.request_id);
            c.idp_entity_id.push(&b.idp_entity_id);
            c.minimum_loa.push(&b.minimum_level_of_assurance);
            c.preferred_loa
                .push(b.preferred_level_of_assurance.as_deref());
            c.provided_loa.push(&b.provided_level_of_assurance);
            c.transaction_entity_id
                .push(b.transaction_entity_id.as_deref());
        }
        c
    }

    fn params(&self) -> [Param<'_>; 10] {
        [
            &self.event_id,
            &self.time_stamp,
            &self.session_id,
            &self.hashed_persistent_id,
            &self.request_id,
            &self.idp_entity_id,
            &self.minimum_loa,
            &self.preferred_loa,
            &self.provided_loa,
            &self.transaction_entity_id,
        ]
    }
}

#[derive(Default)]
struct FraudColumns<'a> {
    event_id: Vec<&'a str>,
    time_stamp: Vec<NaiveDateTime>,
    session_id: Vec<&'a str>,
    hashed_persistent_id: Vec<&'a str>,
    request_id: Vec<Option<&'a str>>,
    entity_id: Vec<&'a str>,
    fraud_event_id: Vec<&'a str>,
    fraud_indicator: Vec<&'a str>,
    transaction_entity_id: Vec<&'a str>,
}

impl<'a> FraudColumns<'a> {
    fn new(records: &[&'a Record]) -> Self {
        let mut c = Self::default();
        for r in records {
            let Some(ExtraRow::Fraud(f)) = &r.extra else {
                continue;
            };
            c.event_id.push(&r.event.event_id);
            c.time_stamp.push(r.event.timestamp);
            c.session_id.push(&r.event.session_id);
            c.hashed_persistent_id.push(&f.hashed_persistent_id);
            c.request_id.push(f.request_id.as_deref());
            c.entity_id.push(&f.entity_id);
            c.fraud_event_id.push(&f.fraud_event_id);
            c.fraud_indicator.push(&f.fraud_indicator);
            c.transaction_entity_id.push(&f.transaction_entity_id);
        }
        c
    }

    fn params(&self) -> [Param<'_>; 9] {
        [
            &self.event_id,
            &self.time_stamp,
            &self.session_id,
            &self.hashed_persistent_id,
            &self.request_id,
            &self.entity_id,
            &self.fraud_event_id,
            &self.fraud_indicator,
            &self.transaction_entity_id,
        ]
    }
}
