//! Writes records to PostgreSQL: one transaction per call, all or nothing.
//! Two ways, the same rows and the same answer:
//!
//! - the statement: one `INSERT ... SELECT ... FROM unnest(arrays) ON
//!   CONFLICT DO NOTHING RETURNING` per table whatever the number of rows,
//!   which skips rows already there and says which were new;
//! - for batches of [`COPY_FROM`] records or more, `COPY`: the audit rows
//!   (most rows) by binary `COPY`, which inserts a page at a time (one WAL
//!   record per page, no speculative insertion), the billing and fraud rows
//!   by plain inserts, with no conflict check and nothing returned. While
//!   large batches come without duplicates, the whole batch is written so,
//!   optimistically: if it commits, every row was new (the primary keys say
//!   so). A row already there (or twice in the batch: 23505) rolls it back;
//!   then, and for the large batches after it, the batch's keys are looked
//!   up first (by primary key, in a transaction of its own) and only the rows
//!   not there yet, each key once, are written by `COPY`. So a redelivered
//!   batch writes nothing and sends only its keys, and a batch with a few
//!   duplicates still goes at `COPY`'s pace. The optimistic `COPY` of the
//!   whole batch returns once the look-ups found nothing in as many large
//!   batches in a row as needed (1 after a clash, doubling with each further
//!   one until it commits), so while duplicates keep coming (a re-run
//!   import, a redelivered backlog) it is not tried. If another writer
//!   stores one of the rows between the look-up and the `COPY` (23505
//!   again), the statement writes the batch. Every way reports the same
//!   duplicates as the statement: the rows written are the rows it would
//!   have written.
//!
//! All write the rows in one key order (event ID, then timestamp; audit,
//! then billing, then fraud), so concurrent writers wait for each other but
//! never deadlock: a writer only ever waits on a key after every smaller key
//! it will write, so no two can each hold what the other waits for.
//!
//! Pooler-safe: nothing outlives a transaction on the server. The statements
//! are unnamed and their parameter types are sent with them (parse, bind and
//! execute in one round trip). tokio-postgres runs `COPY` only as a named
//! prepared statement; here it is prepared inside the transaction and
//! closed (Close, Sync) before `COMMIT`, so the server connection holds no
//! statement when PgBouncer (transaction mode) hands it to another client,
//! and no name can clash with another client's. A transaction always ends
//! (its `COMMIT` or `ROLLBACK` answered) before the next one is sent. RDS
//! Proxy: AWS lists what pins a PostgreSQL session (SET, prepared
//! statements, temporary tables, cursors, DISCARD, LISTEN, loading a library,
//! nextval/setval, advisory locks, and for every engine a statement text
//! over 16 KB; "Avoiding pinning an RDS Proxy",
//! https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy-pinning.html).
//! `COPY` itself is not on the list, its rows travel as CopyData messages
//! (not statement text), and since November 2023 the proxy multiplexes the
//! extended query protocol, tracking prepared statements itself; the one
//! named statement is gone before the transaction ends either way, so the
//! session carries nothing into the next one. No `SET`, temporary table or
//! session lock is used.

use std::collections::HashSet;

use std::pin::pin;

use bytes::{BufMut, BytesMut};
use chrono::NaiveDateTime;
use serde_json::{Map, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, Json, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Row, Transaction};

pub use crate::database::Store;
use crate::database::{CopyBackoff, DbError};
use crate::route::{ExtraRow, Record};

/// Batches of at least this many records try `COPY` first. Below it the
/// statement alone is as fast or faster: `COPY` costs a round trip more
/// (the prepare) and its page-at-a-time insert gains little on a few rows.
/// Chosen from `cargo bench --bench throughput` (README, Benchmarks).
pub const COPY_FROM: usize = 500;

/// The most large batches in a row whose look-up must find nothing after
/// `COPY`s of whole batches met duplicates, before such a `COPY` is tried
/// again (1 after the first clash, doubling with each further one until
/// one commits). While duplicates keep coming (a re-run import, a
/// redelivered backlog) every batch has some and the look-up stays; a batch
/// that clashes by chance (a stray redelivery) costs one rolled-back `COPY`
/// and one look-up.
const MAX_CLEAN_NEEDED: u32 = 64;

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

macro_rules! insert_billing {
    () => {
        "
    INSERT INTO billing.billing_events
        (event_id, time_stamp, session_id, hashed_persistent_id, request_id, idp_entity_id,
         minimum_level_of_assurance, preferred_level_of_assurance, provided_level_of_assurance,
         transaction_entity_id)
    SELECT * FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])"
    };
}

macro_rules! insert_fraud {
    () => {
        "
    INSERT INTO billing.fraud_events
        (event_id, time_stamp, session_id, hashed_persistent_id, request_id, entity_id,
         fraud_event_id, fraud_indicator, transaction_entity_id)
    SELECT * FROM unnest($1::text[], $2::timestamp[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[])"
    };
}

const INSERT_BILLING: &str = concat!(
    insert_billing!(),
    "
    ON CONFLICT DO NOTHING
    RETURNING event_id"
);

const INSERT_FRAUD: &str = concat!(
    insert_fraud!(),
    "
    ON CONFLICT DO NOTHING
    RETURNING event_id"
);

/// The optimistic path's inserts: no conflict check, nothing returned.
const BILLING_NEW: Insert = Insert {
    sql: insert_billing!(),
    types: BILLING.types,
};

const FRAUD_NEW: Insert = Insert {
    sql: insert_fraud!(),
    types: FRAUD.types,
};

/// Keys of the three tables' rows.
#[derive(Debug, Default)]
struct Keys {
    audit: HashSet<(String, NaiveDateTime)>,
    billing: HashSet<String>,
    fraud: HashSet<String>,
}

impl Keys {
    fn len(&self) -> usize {
        self.audit.len() + self.billing.len() + self.fraud.len()
    }
}

/// Keys of the rows a call actually inserted (absent ones already existed).
#[derive(Debug, Default)]
pub struct Inserted {
    keys: Keys,
    /// Every row was new (a `COPY` of the whole batch committed): the keys
    /// are not filled.
    all: bool,
    path: Path,
    clashes: u8,
}

/// The way a call wrote its rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The statement alone.
    #[default]
    Statement,
    /// `COPY` of the whole batch: every row was new.
    Copy,
    /// The batch's keys were looked up first, and only the rows not there
    /// yet were written, by `COPY` (none if all were there).
    Checked,
}

impl Inserted {
    /// The way the rows were written.
    pub fn path(&self) -> Path {
        self.path
    }

    /// How many optimistic writes met a row already there (or written since
    /// it was looked up) and were rolled back before the one that committed.
    pub fn clashes(&self) -> u8 {
        self.clashes
    }

    /// True when every row of `record` was new. Each key is claimed once, so
    /// when a batch holds the same event twice the second copy is the duplicate.
    pub fn claim(&mut self, record: &Record) -> bool {
        if self.all {
            // A committed COPY had no duplicate, not even within the batch.
            return true;
        }
        let e = &record.event;
        let keys = &mut self.keys;
        let audit = keys.audit.remove(&(e.event_id.clone(), e.timestamp));
        let extra = match &record.extra {
            None => true,
            Some(ExtraRow::Billing(_)) => keys.billing.remove(&e.event_id),
            Some(ExtraRow::Fraud(_)) => keys.fraud.remove(&e.event_id),
        };
        audit && extra
    }
}

/// The events' statements, on the connection type of `database`.
impl Store {
    /// Inserts all rows of `records` in one transaction: all or nothing.
    /// A large batch is written by `COPY` (see the module's documentation).
    pub async fn insert(&mut self, records: &[&Record]) -> Result<Inserted, DbError> {
        let records = in_key_order(records);
        if records.len() < COPY_FROM {
            return self.statement(&records, 0).await;
        }
        let mut clashes = 0;
        if self.copy.attempt() {
            let all = Rows::all(&records);
            match self
                .run_to_the_end(async |client| copy(client, &all).await)
                .await
            {
                Ok(()) => {
                    self.copy.committed();
                    return Ok(Inserted {
                        all: true,
                        path: Path::Copy,
                        ..Inserted::default()
                    });
                }
                Err(e) if e.conflict() => {
                    self.copy.clashed();
                    clashes += 1;
                }
                Err(e) => return Err(e),
            }
        }
        let stored = self
            .run_to_the_end(async |client| stored(client, &records).await)
            .await?;
        self.copy.checked(stored.len() == 0);
        let (rows, keys) = missing(&records, &stored);
        if !rows.is_empty() {
            match self
                .run_to_the_end(async |client| copy(client, &rows).await)
                .await
            {
                Ok(()) => {}
                // Another writer stored some of these rows since they were
                // looked up: the statement settles which.
                Err(e) if e.conflict() => return self.statement(&records, clashes + 1).await,
                Err(e) => return Err(e),
            }
        }
        Ok(Inserted {
            keys,
            path: Path::Checked,
            clashes,
            all: false,
        })
    }

    /// [`Store::insert`] by the statement alone, whatever the batch size:
    /// what small batches take (the benches compare the two).
    pub async fn insert_statement(&mut self, records: &[&Record]) -> Result<Inserted, DbError> {
        self.statement(&in_key_order(records), 0).await
    }

    async fn statement(&mut self, records: &[&Record], clashes: u8) -> Result<Inserted, DbError> {
        let mut inserted = self
            .run(async |client| insert(client, records).await)
            .await?;
        inserted.clashes = clashes;
        Ok(inserted)
    }
}

impl CopyBackoff {
    /// Whether this large batch tries `COPY` of the whole batch.
    fn attempt(&self) -> bool {
        self.clean >= self.needed
    }

    fn committed(&mut self) {
        *self = CopyBackoff::default();
    }

    fn clashed(&mut self) {
        self.needed = (self.needed * 2).clamp(1, MAX_CLEAN_NEEDED);
        self.clean = 0;
    }

    /// A large batch's keys were looked up; `clean`: none was there.
    fn checked(&mut self, clean: bool) {
        self.clean = match clean {
            true => self.clean.saturating_add(1),
            false => 0,
        };
    }
}

/// Rows to write, each list in key order: the audit rows of `audit`, the
/// billing or fraud rows of `extra`.
#[derive(Default)]
struct Rows<'a> {
    audit: Vec<&'a Record>,
    extra: Vec<&'a Record>,
}

impl<'a> Rows<'a> {
    /// Every row of `records`.
    fn all(records: &[&'a Record]) -> Self {
        Self {
            audit: records.to_vec(),
            extra: records
                .iter()
                .copied()
                .filter(|r| r.extra.is_some())
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.extra.is_empty()
    }
}

/// The rows of `records` whose keys are neither in `stored` nor earlier in
/// the batch: what the statement would insert, had no other writer come
/// between; and their keys.
fn missing<'a>(records: &[&'a Record], stored: &Keys) -> (Rows<'a>, Keys) {
    let mut rows = Rows::default();
    let mut keys = Keys::default();
    for &r in records {
        let e = &r.event;
        let audit = (e.event_id.clone(), e.timestamp);
        if !stored.audit.contains(&audit) && keys.audit.insert(audit) {
            rows.audit.push(r);
        }
        let (stored, written) = match &r.extra {
            None => continue,
            Some(ExtraRow::Billing(_)) => (&stored.billing, &mut keys.billing),
            Some(ExtraRow::Fraud(_)) => (&stored.fraud, &mut keys.fraud),
        };
        if !stored.contains(&e.event_id) && written.insert(e.event_id.clone()) {
            rows.extra.push(r);
        }
    }
    (rows, keys)
}

/// Which keys are stored already, one primary-key probe per key. The
/// `LIMIT 1` keeps the probe a subquery run key by key, by index (and
/// not a bitmap scan): as a join or `EXISTS`, the planner hashed the whole
/// table while it was small and without statistics (5.5 ms against 1 ms
/// for 1,000 keys among 24,000 rows). Both key columns of the audit table,
/// so one row per key is expected; at most [`LOOKUP_CHUNK`] keys per
/// statement, so the estimated cost stays below `jit_above_cost`'s default
/// (100,000): compiling took 20 to 70 ms here for a look-up that runs in 1 ms.
const STORED_AUDIT: &str = "
    SELECT k.event_id, k.time_stamp
    FROM unnest($1::text[], $2::timestamp[]) AS k(event_id, time_stamp),
         LATERAL (SELECT FROM audit.audit_events a
                  WHERE a.event_id = k.event_id AND a.time_stamp = k.time_stamp
                  LIMIT 1) AS stored";

const STORED_BILLING: &str = "
    SELECT k.event_id FROM unnest($1::text[]) AS k(event_id),
         LATERAL (SELECT FROM billing.billing_events b WHERE b.event_id = k.event_id
                  LIMIT 1) AS stored";

const STORED_FRAUD: &str = "
    SELECT k.event_id FROM unnest($1::text[]) AS k(event_id),
         LATERAL (SELECT FROM billing.fraud_events f WHERE f.event_id = k.event_id
                  LIMIT 1) AS stored";

/// Keys per look-up statement (an estimated cost of about 8,300 per 1,000).
const LOOKUP_CHUNK: usize = 2_000;

/// One look-up statement: the keys of one table, at most [`LOOKUP_CHUNK`].
struct Lookup<'a> {
    sql: &'static str,
    ids: Vec<&'a str>,
    /// The audit rows' timestamps (the second key column).
    times: Option<Vec<NaiveDateTime>>,
}

impl Lookup<'_> {
    async fn run(&self, client: &Client) -> Result<Vec<Row>, tokio_postgres::Error> {
        let ids: (Param, Type) = (&self.ids, Type::TEXT_ARRAY);
        match &self.times {
            Some(times) => {
                let times: (Param, Type) = (times, Type::TIMESTAMP_ARRAY);
                client.query_typed(self.sql, &[ids, times]).await
            }
            None => client.query_typed(self.sql, &[ids]).await,
        }
    }
}

/// The keys of `records` (in key order) that are stored already. The
/// look-ups go in one transaction, sent together: one round trip, and one
/// server connection behind a pooler.
async fn stored(client: &mut Client, records: &[&Record]) -> Result<Keys, tokio_postgres::Error> {
    let client = &*client;
    let mut audit: Vec<(&str, NaiveDateTime)> = records
        .iter()
        .map(|r| (r.event.event_id.as_str(), r.event.timestamp))
        .collect();
    // In key order already: only neighbours can be equal.
    audit.dedup();
    let extra_ids = |billing: bool| -> Vec<&str> {
        let mut ids: Vec<&str> = records
            .iter()
            .filter(|r| match r.extra {
                Some(ExtraRow::Billing(_)) => billing,
                Some(ExtraRow::Fraud(_)) => !billing,
                None => false,
            })
            .map(|r| r.event.event_id.as_str())
            .collect();
        ids.dedup();
        ids
    };
    let mut lookups = Vec::new();
    for chunk in audit.chunks(LOOKUP_CHUNK) {
        lookups.push(Lookup {
            sql: STORED_AUDIT,
            ids: chunk.iter().map(|k| k.0).collect(),
            times: Some(chunk.iter().map(|k| k.1).collect()),
        });
    }
    for (sql, ids) in [
        (STORED_BILLING, extra_ids(true)),
        (STORED_FRAUD, extra_ids(false)),
    ] {
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            lookups.push(Lookup {
                sql,
                ids: chunk.to_vec(),
                times: None,
            });
        }
    }
    // Polled in this order, each queues its messages behind the one before.
    let (begun, found, ended) = tokio::join!(
        client.batch_execute("BEGIN"),
        futures_util::future::try_join_all(lookups.iter().map(|l| l.run(client))),
        client.batch_execute("COMMIT"),
    );
    begun?;
    let found = found?;
    ended?;
    let mut keys = Keys::default();
    for (lookup, rows) in lookups.iter().zip(found) {
        for row in rows {
            let id: String = row.get(0);
            match lookup.sql {
                STORED_AUDIT => {
                    keys.audit.insert((id, row.get(1)));
                }
                STORED_BILLING => {
                    keys.billing.insert(id);
                }
                _ => {
                    keys.fraud.insert(id);
                }
            }
        }
    }
    Ok(keys)
}

/// The one key order every write follows, so concurrent writers cannot
/// deadlock (see the module's documentation).
fn in_key_order<'a>(records: &[&'a Record]) -> Vec<&'a Record> {
    let mut records = records.to_vec();
    records.sort_by(|a, b| {
        (&a.event.event_id, a.event.timestamp).cmp(&(&b.event.event_id, b.event.timestamp))
    });
    records
}

/// The statements of [`Store::insert`]: the three tables in one transaction,
/// `records` in key order.
async fn insert(
    client: &mut Client,
    records: &[&Record],
) -> Result<Inserted, tokio_postgres::Error> {
    let audit = AuditColumns::new(records);
    let billing = BillingColumns::new(records);
    let fraud = FraudColumns::new(records);

    let audit_params = audit.params();
    let tx = client.transaction().await?;
    // Issued together, the statements share network round trips.
    let written = tokio::try_join!(
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
    );
    let (audit_rows, billing_rows, fraud_rows) = end(tx, written).await?;
    Ok(Inserted {
        keys: Keys {
            audit: audit_rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            billing: billing_rows.iter().map(|r| r.get(0)).collect(),
            fraud: fraud_rows.iter().map(|r| r.get(0)).collect(),
        },
        ..Inserted::default()
    })
}

/// Ends `tx`: COMMIT if `written` succeeded, else ROLLBACK, awaited.
/// (Dropped, a tokio-postgres transaction sends its ROLLBACK without waiting
/// for the answer, and the next call's BEGIN follows right behind it;
/// PgBouncer in transaction mode hands the server connection on at the
/// ROLLBACK's answer, and the BEGIN's answer is lost: the client waits
/// for ever.)
async fn end<T>(
    tx: Transaction<'_>,
    written: Result<T, tokio_postgres::Error>,
) -> Result<T, tokio_postgres::Error> {
    match written {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            // The write's error is the one to report; if the connection is
            // gone, so is the transaction.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

const COPY_AUDIT: &str = "COPY audit.audit_events
    (event_id, event_type, time_stamp, originating_service, session_id, details)
    FROM STDIN (FORMAT binary)";

const AUDIT_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMP,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
];

/// The `COPY` ways of [`Store::insert`], `rows` in key order: the audit
/// rows by binary `COPY` (most of the rows), then the billing and fraud
/// rows by plain inserts (no conflict check, nothing returned), in one
/// transaction. Fails (23505) if any row clashes; then nothing is written.
///
/// Three round trips, as many as the statement's: `BEGIN` with the `COPY`'s
/// prepare; the `COPY`'s start; then the rows, the inserts, the statement's
/// Close and `COMMIT`, sent one after the other without waiting. If
/// anything before it failed, the server answers that `COMMIT` with a
/// rollback, so the transaction always ends within the call, before the
/// next one begins (PgBouncer in transaction mode hands the server
/// connection on at its answer). tokio-postgres runs `COPY` only as a named
/// prepared statement: this one is closed before the `COMMIT`. A call
/// dropped half-way would leave the session in the transaction: the caller
/// ([`Store::insert`]) marks the connection lost until the call ends.
async fn copy(client: &mut Client, rows: &Rows<'_>) -> Result<(), tokio_postgres::Error> {
    let client = &*client;
    let billing = BillingColumns::new(&rows.extra);
    let fraud = FraudColumns::new(&rows.extra);
    let (begun, statement) =
        tokio::join!(client.batch_execute("BEGIN"), client.prepare(COPY_AUDIT));
    begun?;
    let started = match statement {
        Ok(statement) => client
            .copy_in::<_, bytes::Bytes>(&statement)
            .await
            .map(|sink| (statement, sink)),
        Err(e) => Err(e),
    };
    let (statement, sink) = match started {
        Ok(started) => started,
        Err(e) => {
            // If the COPY failed to start, its statement was dropped above:
            // its Close goes before this.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    let optional =
        async |columns_empty: bool, insert: &Insert, params: &[Param<'_>]| match columns_empty {
            true => Ok(()),
            false => {
                let typed: Vec<(Param, Type)> = params
                    .iter()
                    .zip(insert.types)
                    .map(|(p, t)| (*p, t.clone()))
                    .collect();
                client.query_typed(insert.sql, &typed).await.map(drop)
            }
        };
    let (billing_params, fraud_params) = (billing.params(), fraud.params());
    // Polled in this order, each queues its messages behind the COPY's rows.
    let (copied, billed, frauds, committed) = tokio::join!(
        copy_audit(sink, &rows.audit),
        optional(billing.event_id.is_empty(), &BILLING_NEW, &billing_params),
        optional(fraud.event_id.is_empty(), &FRAUD_NEW, &fraud_params),
        async {
            drop(statement);
            client.batch_execute("COMMIT").await
        },
    );
    copied?;
    billed?;
    frauds?;
    committed
}

/// The audit rows into a started `COPY`.
async fn copy_audit(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    records: &[&Record],
) -> Result<(), tokio_postgres::Error> {
    let mut rows = pin!(BinaryCopyInWriter::new(sink, AUDIT_TYPES));
    for r in records {
        let e = &r.event;
        // Binary jsonb: a version byte, then the same JSON text the
        // statement sends, so the same parser stores the same value.
        let details = Json(&e.details);
        let row: [Param; 6] = [
            &e.event_id,
            &e.event_type,
            &e.timestamp,
            &e.originating_service,
            &e.session_id,
            &details,
        ];
        rows.as_mut().write(&row).await?;
    }
    rows.finish().await?;
    Ok(())
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
