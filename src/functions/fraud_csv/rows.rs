//! The CSV rows of an IdP fraud report, checked before the database.
//!
//! Every row is checked and every problem reported, so one upload lists all
//! that is wrong with the file. Failures name the column and the rule, never
//! the value: the rows are personal data.
//!
//! A UTF-8 byte-order mark at the start of the file is dropped: spreadsheet
//! programs add one, and it is never part of the first value.

use std::num::IntErrorKind;

use chrono::NaiveDateTime;
use csv::{ByteRecord, ReaderBuilder};

use super::tags::UploadTags;
use super::timestamp::{DateOrder, parse_timestamp};

/// The field name under which row-level problems (wrong column count,
/// unreadable bytes) are recorded, as the original service spelled it.
pub const ROW_EXCEPTION: &str = "**Row Exception**";

/// The columns of a fraud report, in file order.
pub const COLUMNS: [&str; 8] = [
    "timestamp",
    "idp_event_id",
    "fid_code",
    "contra_indicators",
    "contra_score",
    "request_id",
    "client_ip_address",
    "pid",
];

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One valid CSV row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// 1-based record number; a header counts as row 1.
    pub row: u64,
    /// Wall-clock time as written, or UTC if the file gave an offset.
    pub time_stamp: NaiveDateTime,
    pub idp_event_id: String,
    pub fid_code: String,
    /// In file order, repeats kept (the store counts them).
    pub contra_indicators: Vec<String>,
    pub contra_score: i32,
    pub request_id: String,
    pub client_ip_address: String,
    pub pid: String,
}

/// One problem with one row: stored in `idp_data.upload_session_validation_failures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFailure {
    pub row: u64,
    pub field: String,
    pub message: String,
}

impl RowFailure {
    fn new(row: u64, field: &str, message: impl Into<String>) -> Self {
        Self {
            row,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub rows: Vec<ReportRow>,
    pub failures: Vec<RowFailure>,
}

/// Every row checked; never stops at the first failure.
pub fn parse(bytes: &[u8], tags: &UploadTags) -> Parsed {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    // The column count is checked here, per row, so that a short row is a
    // row failure rather than the end of the file.
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(tags.dialect.delimiter())
        .quote(b'"')
        .double_quote(true)
        .from_reader(bytes);
    let mut parsed = Parsed::default();
    let mut record = ByteRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                row += 1;
                if !(row == 1 && tags.has_header) {
                    check_record(row, &record, tags.date_order, &mut parsed);
                }
            }
            Err(_) => {
                // With byte records and any column count allowed, the reader
                // fails only on I/O, after which its position is unknown.
                row += 1;
                parsed.failures.push(RowFailure::new(
                    row,
                    ROW_EXCEPTION,
                    "the file could not be read from this row on",
                ));
                break;
            }
        }
    }
    parsed
}

fn check_record(row: u64, record: &ByteRecord, date_order: DateOrder, parsed: &mut Parsed) {
    if record.len() != COLUMNS.len() {
        parsed.failures.push(RowFailure::new(
            row,
            ROW_EXCEPTION,
            format!("expected {} columns, found {}", COLUMNS.len(), record.len()),
        ));
        return;
    }
    let mut fields = [""; COLUMNS.len()];
    let mut not_utf8 = Vec::new();
    for (i, bytes) in record.iter().enumerate() {
        match std::str::from_utf8(bytes) {
            Ok(text) => fields[i] = text,
            Err(_) => not_utf8.push(format!("`{}`", COLUMNS[i])),
        }
    }
    if !not_utf8.is_empty() {
        parsed.failures.push(RowFailure::new(
            row,
            ROW_EXCEPTION,
            format!("not valid UTF-8 in column {}", not_utf8.join(", ")),
        ));
        return;
    }

    let failures_before = parsed.failures.len();
    let mut fail = |column: &str, message: String| {
        parsed.failures.push(RowFailure::new(row, column, message));
    };
    let [
        timestamp,
        idp_event_id,
        fid_code,
        contra_indicators,
        contra_score,
        request_id,
        client_ip_address,
        pid,
    ] = fields;
    // PostgreSQL text cannot hold NUL, and one such value would fail the
    // whole file's insert; it is a row problem like any other.
    for (column, text) in COLUMNS.iter().zip(fields) {
        // The two parsed columns report NUL as a parse failure.
        let parsed_column = *column == "timestamp" || *column == "contra_score";
        if !parsed_column && text.contains('\0') {
            fail(
                column,
                "contains a NUL character, which cannot be stored".into(),
            );
        }
    }
    let time_stamp =
        parse_timestamp(timestamp, date_order).map_err(|e| fail("timestamp", e.to_string()));
    let contra_score = parse_score(contra_score).map_err(|e| fail("contra_score", e.to_owned()));
    let (Ok(time_stamp), Ok(contra_score)) = (time_stamp, contra_score) else {
        return;
    };
    if parsed.failures.len() > failures_before {
        return;
    }
    parsed.rows.push(ReportRow {
        row,
        time_stamp,
        idp_event_id: idp_event_id.to_owned(),
        fid_code: fid_code.to_owned(),
        contra_indicators: split_contra_indicators(contra_indicators),
        contra_score,
        request_id: request_id.to_owned(),
        client_ip_address: client_ip_address.to_owned(),
        pid: pid.to_owned(),
    });
}

/// Codes are separated by commas or line breaks; blanks between them are
/// dropped, repeats kept.
fn split_contra_indicators(text: &str) -> Vec<String> {
    text.split([',', '\n', '\r'])
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A blank score is 0; otherwise a whole number that fits PostgreSQL's `integer`.
fn parse_score(text: &str) -> Result<i32, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                "is outside the range of a 32-bit integer"
            }
            _ => "is not a whole number",
        })
}

#[cfg(test)]
mod tests;
