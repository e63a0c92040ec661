//! Object tags and CSV rows of an IdP fraud report, checked before the database.
//!
//! Every row is checked and every problem reported, so one upload lists all
//! that is wrong with the file. Failures name the column and the rule, never
//! the value: the rows are personal data.
//!
//! Timestamps: a value without an offset is wall-clock time and is stored as
//! written; a value with an offset or `Z` is stored as UTC. The `timezone`
//! tag is validated but changes no stored value: the service this one
//! replaces stored them so, and rows already stored keep their meaning.
//!
//! A UTF-8 byte-order mark at the start of the file is dropped: spreadsheet
//! programs add one, and it is never part of the first value.

use std::num::IntErrorKind;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use csv::{ByteRecord, ReaderBuilder};

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

const DEFAULT_TIMEZONE: chrono_tz::Tz = chrono_tz::Europe::London;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// CSV dialects as Python's `csv` module names them. For reading, `unix`
/// differs from `excel` only in what it would write, so the two read alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Excel,
    ExcelTab,
    Unix,
}

impl Dialect {
    const ACCEPTED: &'static str = "excel, excel-tab, unix";

    fn from_tag(value: &str) -> Option<Self> {
        match value {
            "excel" => Some(Self::Excel),
            "excel-tab" => Some(Self::ExcelTab),
            "unix" => Some(Self::Unix),
            _ => None,
        }
    }

    fn delimiter(self) -> u8 {
        match self {
            Self::Excel | Self::Unix => b',',
            Self::ExcelTab => b'\t',
        }
    }
}

/// What the object's tags say about an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// Tag `idp` (required, non-blank): the IdP entity id.
    pub idp: String,
    /// Tag `username` (required, non-blank).
    pub username: String,
    /// Tag `timezone`: an IANA name, default Europe/London.
    pub timezone: chrono_tz::Tz,
    /// Tag `dialect`: `excel` (default), `excel-tab` or `unix`.
    pub dialect: Dialect,
    /// Tag `has_header`: default true; `true`, `1`, `y` or `yes` (any case)
    /// mean true, any other value false.
    pub has_header: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object tag `{tag}`: {problem}")]
pub struct TagError {
    pub tag: &'static str,
    pub problem: String,
}

impl TagError {
    fn new(tag: &'static str, problem: impl Into<String>) -> Self {
        Self {
            tag,
            problem: problem.into(),
        }
    }
}

impl Upload {
    /// Reads the upload's settings from its S3 object tags. Unknown tags are
    /// ignored; if a tag appears twice, the last one counts.
    pub fn from_tags<'a>(
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, TagError> {
        let mut idp = None;
        let mut username = None;
        let mut timezone = None;
        let mut dialect = None;
        let mut has_header = None;
        for (key, value) in tags {
            match key {
                "idp" => idp = Some(value),
                "username" => username = Some(value),
                "timezone" => timezone = Some(value),
                "dialect" => dialect = Some(value),
                "has_header" => has_header = Some(value),
                _ => {}
            }
        }
        let timezone = match timezone {
            None => DEFAULT_TIMEZONE,
            Some(name) => name.parse().map_err(|_| {
                TagError::new(
                    "timezone",
                    "is not an IANA time zone name (such as Europe/London)",
                )
            })?,
        };
        let dialect = match dialect {
            None => Dialect::Excel,
            Some(name) => Dialect::from_tag(name).ok_or_else(|| {
                TagError::new(
                    "dialect",
                    format!("is not a known dialect (accepted: {})", Dialect::ACCEPTED),
                )
            })?,
        };
        Ok(Self {
            idp: required("idp", idp)?,
            username: required("username", username)?,
            timezone,
            dialect,
            has_header: has_header.is_none_or(is_true),
        })
    }
}

fn required(tag: &'static str, value: Option<&str>) -> Result<String, TagError> {
    match value {
        None => Err(TagError::new(tag, "is missing")),
        Some(v) if v.trim().is_empty() => Err(TagError::new(tag, "is blank")),
        Some(v) => Ok(v.to_owned()),
    }
}

fn is_true(value: &str) -> bool {
    ["true", "1", "y", "yes"]
        .iter()
        .any(|t| value.eq_ignore_ascii_case(t))
}

/// One valid CSV row.
#[derive(Debug, Clone, PartialEq)]
pub struct FraudRow {
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
    pub rows: Vec<FraudRow>,
    pub failures: Vec<RowFailure>,
}

/// Every row checked; never stops at the first failure.
pub fn parse(bytes: &[u8], upload: &Upload) -> Parsed {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    // The column count is checked here, per row, so that a short row is a
    // row failure rather than the end of the file.
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(upload.dialect.delimiter())
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
                if !(row == 1 && upload.has_header) {
                    check_record(row, &record, &mut parsed);
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

fn check_record(row: u64, record: &ByteRecord, parsed: &mut Parsed) {
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
    let time_stamp = parse_timestamp(timestamp).map_err(|e| fail("timestamp", e.to_string()));
    let contra_score = parse_score(contra_score).map_err(|e| fail("contra_score", e.to_owned()));
    let (Ok(time_stamp), Ok(contra_score)) = (time_stamp, contra_score) else {
        return;
    };
    if parsed.failures.len() > failures_before {
        return;
    }
    parsed.rows.push(FraudRow {
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

/// Why a timestamp was refused. Each variant is one rule; none carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("is blank")]
    Blank,
    #[error(
        "is not in a known form (YYYY-MM-DD HH:MM[:SS[.fraction]] with an optional offset, \
         or DD/MM/YYYY HH:MM[:SS])"
    )]
    Unrecognised,
    #[error("has a date but no time of day")]
    DateOnly,
    #[error("has more than 9 digits of fractional seconds")]
    FractionTooLong,
    #[error("names a day that does not exist")]
    NoSuchDate,
    #[error("has an hour, minute or second out of range")]
    NoSuchTime,
    #[error("has a UTC offset of 24 hours or more, or offset minutes above 59")]
    OffsetOutOfRange,
    #[error("is not a valid day-first date (DD/MM/YYYY): the month is above 12")]
    NotDayFirst,
    #[error(
        "is an ambiguous DD/MM/YYYY date: day and month are both 12 or less and differ, \
         so it reads differently month-first; write it as YYYY-MM-DD"
    )]
    AmbiguousDayMonth,
}

/// Reads a timestamp as the rows hold it (see the module doc for what is
/// stored). Accepted, after trimming:
/// - ISO 8601: `YYYY-MM-DD`, `T` or a space, `HH:MM`, optional `:SS`, optional
///   fraction of 1–9 digits (kept to the microsecond), then optionally one
///   space and an offset `Z`, `±HH:MM`, `±HHMM` or `±HH`;
/// - day-first `D/M/YYYY HH:MM[:SS]` (day and month of 1 or 2 digits), unless
///   day and month could be swapped.
pub fn parse_timestamp(text: &str) -> Result<NaiveDateTime, TimestampError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TimestampError::Blank);
    }
    let b = text.as_bytes();
    if b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        iso(Cursor::new(b))
    } else if text.contains('/') {
        day_first(Cursor::new(b))
    } else {
        Err(TimestampError::Unrecognised)
    }
}

fn iso(mut c: Cursor) -> Result<NaiveDateTime, TimestampError> {
    use TimestampError::Unrecognised;
    let (year, month, day) = iso_date(&mut c).ok_or(Unrecognised)?;
    if c.done() {
        return Err(TimestampError::DateOnly);
    }
    if !(c.eat(b'T') || c.eat(b' ')) {
        return Err(Unrecognised);
    }
    let (hour, minute) = hour_minute(&mut c).ok_or(Unrecognised)?;
    let (mut second, mut micro) = (0, 0);
    if c.eat(b':') {
        second = c.digits(2).ok_or(Unrecognised)?;
        if c.eat(b'.') {
            micro = fraction(&mut c)?;
        }
    }
    let offset = offset(&mut c)?;
    if !c.done() {
        return Err(Unrecognised);
    }
    let naive = date_time(year, month, day, hour, minute, second, micro)?;
    Ok(match offset {
        None => naive,
        Some(east) => naive
            .checked_sub_signed(east)
            .expect("a four-digit year moved by under a day is in range"),
    })
}

/// `YYYY-MM-DD` as (year, month, day).
fn iso_date(c: &mut Cursor) -> Option<(u32, u32, u32)> {
    let year = c.digits(4)?;
    c.eat(b'-').then_some(())?;
    let month = c.digits(2)?;
    c.eat(b'-').then_some(())?;
    Some((year, month, c.digits(2)?))
}

/// Fractional seconds, truncated to microseconds.
fn fraction(c: &mut Cursor) -> Result<u32, TimestampError> {
    let digits = c.take_digits();
    if digits.is_empty() {
        return Err(TimestampError::Unrecognised);
    }
    if digits.len() > 9 {
        return Err(TimestampError::FractionTooLong);
    }
    let mut micro = [b'0'; 6];
    let kept = digits.len().min(6);
    micro[..kept].copy_from_slice(&digits[..kept]);
    Ok(number(&micro))
}

/// The offset east of UTC, if one is written: `Z`, `±HH:MM`, `±HHMM` or
/// `±HH`, optionally after one space.
fn offset(c: &mut Cursor) -> Result<Option<TimeDelta>, TimestampError> {
    use TimestampError::Unrecognised;
    if c.done() {
        return Ok(None);
    }
    c.eat(b' ');
    if c.eat(b'Z') {
        return Ok(Some(TimeDelta::zero()));
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return Err(Unrecognised);
    };
    let digits = c.take_digits();
    let (hours, minutes) = match digits.len() {
        2 if c.eat(b':') => (number(digits), c.digits(2).ok_or(Unrecognised)?),
        2 => (number(digits), 0),
        4 => (number(&digits[..2]), number(&digits[2..])),
        _ => return Err(Unrecognised),
    };
    if hours > 23 || minutes > 59 {
        return Err(TimestampError::OffsetOutOfRange);
    }
    Ok(Some(TimeDelta::minutes(
        sign * i64::from(hours * 60 + minutes),
    )))
}

fn day_first(mut c: Cursor) -> Result<NaiveDateTime, TimestampError> {
    use TimestampError::Unrecognised;
    let (day, month, year) = day_first_date(&mut c).ok_or(Unrecognised)?;
    if c.done() {
        return Err(TimestampError::DateOnly);
    }
    if !c.eat(b' ') {
        return Err(Unrecognised);
    }
    let (hour, minute) = hour_minute(&mut c).ok_or(Unrecognised)?;
    let second = if c.eat(b':') {
        c.digits(2).ok_or(Unrecognised)?
    } else {
        0
    };
    if !c.done() {
        return Err(Unrecognised);
    }
    if month > 12 {
        return Err(TimestampError::NotDayFirst);
    }
    if (1..=12).contains(&day) && (1..=12).contains(&month) && day != month {
        return Err(TimestampError::AmbiguousDayMonth);
    }
    date_time(year, month, day, hour, minute, second, 0)
}

/// `D/M/YYYY` (day and month of 1 or 2 digits) as (day, month, year).
fn day_first_date(c: &mut Cursor) -> Option<(u32, u32, u32)> {
    let day = c.one_or_two_digits()?;
    c.eat(b'/').then_some(())?;
    let month = c.one_or_two_digits()?;
    c.eat(b'/').then_some(())?;
    Some((day, month, c.digits(4)?))
}

fn hour_minute(c: &mut Cursor) -> Option<(u32, u32)> {
    let hour = c.digits(2)?;
    c.eat(b':').then_some(())?;
    Some((hour, c.digits(2)?))
}

fn date_time(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micro: u32,
) -> Result<NaiveDateTime, TimestampError> {
    // At most four digits, so the year always fits.
    let year = i32::try_from(year).map_err(|_| TimestampError::NoSuchDate)?;
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(TimestampError::NoSuchDate)?;
    // chrono would take second 60 as a leap second; PostgreSQL would move it
    // to the next minute. Neither is what the file says, so refuse it.
    if second > 59 {
        return Err(TimestampError::NoSuchTime);
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micro)
        .ok_or(TimestampError::NoSuchTime)?;
    Ok(date.and_time(time))
}

/// The value of a run of at most nine ASCII digits.
fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// A forward-only reader over the ASCII structure of a timestamp.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.bytes.get(self.at) == Some(&byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn take_digits(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        self.at += n;
        &rest[..n]
    }

    /// Exactly `n` digits, not followed by another digit.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let start = self.at;
        let digits = self.take_digits();
        if digits.len() != n {
            self.at = start;
            return None;
        }
        Some(number(digits))
    }

    fn one_or_two_digits(&mut self) -> Option<u32> {
        self.digits(1).or_else(|| self.digits(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid\n";

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    fn upload(dialect: Dialect, has_header: bool) -> Upload {
        Upload {
            idp: "https://idp.example/entity".into(),
            username: "uploader".into(),
            timezone: chrono_tz::Europe::London,
            dialect,
            has_header,
        }
    }

    fn parse_str(text: &str, dialect: Dialect, has_header: bool) -> Parsed {
        parse(text.as_bytes(), &upload(dialect, has_header))
    }

    fn row_failure(row: u64, field: &str, message: &str) -> RowFailure {
        RowFailure::new(row, field, message)
    }

    fn rows(parsed: &Parsed) -> Vec<u64> {
        parsed.rows.iter().map(|r| r.row).collect()
    }

    // ---- timestamps ----

    #[test]
    fn iso_with_t_or_space_with_or_without_seconds() {
        for (text, want) in [
            ("2019-08-01T10:00", "2019-08-01 10:00:00"),
            ("2019-08-01 10:00", "2019-08-01 10:00:00"),
            ("2019-08-01T10:00:30", "2019-08-01 10:00:30"),
            ("2019-08-01 23:59:59", "2019-08-01 23:59:59"),
            ("  2019-08-01 10:00\t", "2019-08-01 10:00:00"),
        ] {
            assert_eq!(parse_timestamp(text), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn iso_fractions_are_truncated_to_microseconds() {
        for (text, want) in [
            ("2019-03-01T02:40:40.1", "2019-03-01 02:40:40.1"),
            ("2019-03-01T02:40:40.123456", "2019-03-01 02:40:40.123456"),
            ("2019-03-01T02:40:40.1110000", "2019-03-01 02:40:40.111"),
            ("2019-03-01T02:40:40.1234567", "2019-03-01 02:40:40.123456"),
            (
                "2019-03-01T02:40:40.999999999",
                "2019-03-01 02:40:40.999999",
            ),
            ("2019-03-01T02:40:40.1110000Z", "2019-03-01 02:40:40.111"),
        ] {
            assert_eq!(parse_timestamp(text), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn iso_with_offset_is_converted_to_utc() {
        for (text, want) in [
            ("2019-08-01T10:00:00Z", "2019-08-01 10:00:00"),
            ("2019-08-01 10:00 Z", "2019-08-01 10:00:00"),
            ("2019-08-01T10:00:00+02:00", "2019-08-01 08:00:00"),
            ("2019-08-01T10:00+0200", "2019-08-01 08:00:00"),
            ("2019-08-01 10:00 +0200", "2019-08-01 08:00:00"),
            ("2019-08-01 10:00 +02:00", "2019-08-01 08:00:00"),
            ("2019-08-01T10:00-05", "2019-08-01 15:00:00"),
            ("2019-08-01T22:30:00.5-05:30", "2019-08-02 04:00:00.5"),
            ("2019-08-01T00:10+01", "2019-07-31 23:10:00"),
            ("2019-10-27 01:30+0000", "2019-10-27 01:30:00"),
            ("2019-08-01T10:00+23:59", "2019-07-31 10:01:00"),
        ] {
            assert_eq!(parse_timestamp(text), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn naive_times_around_london_clock_changes_are_stored_as_written() {
        // 01:30 on 31 March 2019 never happened in London, and 01:30 on
        // 27 October 2019 happened twice; neither is moved.
        for (text, want) in [
            ("2019-03-31 00:30:00", "2019-03-31 00:30:00"),
            ("2019-03-31 01:30:00", "2019-03-31 01:30:00"),
            ("2019-03-31T02:30", "2019-03-31 02:30:00"),
            ("2019-10-27 01:30", "2019-10-27 01:30:00"),
            ("27/10/2019 01:30", "2019-10-27 01:30:00"),
        ] {
            assert_eq!(parse_timestamp(text), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn unambiguous_day_first_dates_parse() {
        for (text, want) in [
            ("15/01/2019 10:00", "2019-01-15 10:00:00"),
            ("15/1/2019 10:00:30", "2019-01-15 10:00:30"),
            ("05/05/2019 10:00", "2019-05-05 10:00:00"),
            ("5/5/2019 09:05", "2019-05-05 09:05:00"),
            ("31/12/2019 23:59:59", "2019-12-31 23:59:59"),
            ("13/12/2019 00:00", "2019-12-13 00:00:00"),
        ] {
            assert_eq!(parse_timestamp(text), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn ambiguous_day_first_dates_fail() {
        for text in ["01/08/2019 10:00", "1/8/2019 10:00:00", "12/11/2019 00:00"] {
            assert_eq!(
                parse_timestamp(text),
                Err(TimestampError::AmbiguousDayMonth),
                "{text:?}"
            );
        }
    }

    #[test]
    fn month_first_dates_are_not_day_first() {
        for text in ["01/15/2019 10:00", "1/31/2019 10:00"] {
            assert_eq!(
                parse_timestamp(text),
                Err(TimestampError::NotDayFirst),
                "{text:?}"
            );
        }
    }

    #[test]
    fn dates_without_times_fail() {
        for text in ["2019-08-01", "15/01/2019", " 2019-08-01 "] {
            assert_eq!(
                parse_timestamp(text),
                Err(TimestampError::DateOnly),
                "{text:?}"
            );
        }
    }

    #[test]
    fn blank_timestamps_fail() {
        for text in ["", "   ", "\t"] {
            assert_eq!(
                parse_timestamp(text),
                Err(TimestampError::Blank),
                "{text:?}"
            );
        }
    }

    #[test]
    fn other_forms_are_unrecognised() {
        for text in [
            "yesterday",
            "1564653600",
            "2019-8-1 10:00",
            "2019-08-01T10",
            "2019-08-01T10:00:",
            "2019-08-01 10:00:00.",
            "2019-08-01  10:00",
            "2019-08-01 10:00  +0200",
            "2019-08-01t10:00",
            "2019-08-01 10:00:00+2",
            "2019-08-01 10:00:00+020",
            "2019-08-01 10:00:00+02:00:00",
            "2019-08-01 10:00:00 UTC",
            "2019-08-01 10.00",
            "2019/08/01 10:00",
            "15/01/19 10:00",
            "15/01/2019T10:00",
            "15/01/2019 10:00Z",
            "15/01/2019 10:00:00.5",
            "15-01-2019 10:00",
        ] {
            assert_eq!(
                parse_timestamp(text),
                Err(TimestampError::Unrecognised),
                "{text:?}"
            );
        }
    }

    #[test]
    fn fractions_longer_than_nine_digits_fail() {
        assert_eq!(
            parse_timestamp("2019-03-01T02:40:40.1234567890Z"),
            Err(TimestampError::FractionTooLong)
        );
    }

    #[test]
    fn impossible_dates_and_times_fail() {
        for (text, want) in [
            ("2019-02-29 10:00", TimestampError::NoSuchDate),
            ("2019-13-01 10:00", TimestampError::NoSuchDate),
            ("2019-00-10 10:00", TimestampError::NoSuchDate),
            ("31/02/2019 10:00", TimestampError::NoSuchDate),
            ("00/00/2019 10:00", TimestampError::NoSuchDate),
            ("32/01/2019 10:00", TimestampError::NoSuchDate),
            ("2019-08-01 24:00", TimestampError::NoSuchTime),
            ("2019-08-01 10:60", TimestampError::NoSuchTime),
            ("2019-08-01 23:59:60", TimestampError::NoSuchTime),
            ("15/01/2019 25:00", TimestampError::NoSuchTime),
        ] {
            assert_eq!(parse_timestamp(text), Err(want), "{text:?}");
        }
        assert_eq!(
            parse_timestamp("2020-02-29 10:00"),
            Ok(at("2020-02-29 10:00:00"))
        );
    }

    #[test]
    fn offsets_of_a_day_or_more_fail() {
        for text in [
            "2019-08-01T10:00+24:00",
            "2019-08-01T10:00-2400",
            "2019-08-01T10:00+99",
            "2019-08-01T10:00+23:60",
        ] {
            assert_eq!(
                parse_timestamp(text),
                Err(TimestampError::OffsetOutOfRange),
                "{text:?}"
            );
        }
    }

    // ---- rows ----

    #[test]
    fn a_full_row_is_read_with_text_fields_as_given() {
        let parsed = parse_str(
            &format!("{HEADER}2019-08-01 10:00, ev-1 ,F01,\"A01, B02\",5,req 1,192.0.2.1,pid-1\n"),
            Dialect::Excel,
            true,
        );
        assert_eq!(parsed.failures, vec![]);
        assert_eq!(
            parsed.rows,
            vec![FraudRow {
                row: 2,
                time_stamp: at("2019-08-01 10:00:00"),
                idp_event_id: " ev-1 ".into(),
                fid_code: "F01".into(),
                contra_indicators: vec!["A01".into(), "B02".into()],
                contra_score: 5,
                request_id: "req 1".into(),
                client_ip_address: "192.0.2.1".into(),
                pid: "pid-1".into(),
            }]
        );
    }

    #[test]
    fn text_fields_may_be_empty() {
        let parsed = parse_str("2019-08-01 10:00,,,,,,,\n", Dialect::Excel, false);
        assert_eq!(parsed.failures, vec![]);
        let row = &parsed.rows[0];
        assert_eq!(row.row, 1);
        assert_eq!(row.contra_score, 0);
        assert!(row.contra_indicators.is_empty());
        for text in [
            &row.idp_event_id,
            &row.fid_code,
            &row.request_id,
            &row.client_ip_address,
            &row.pid,
        ] {
            assert_eq!(text, "");
        }
    }

    #[test]
    fn header_is_row_one_and_is_not_checked() {
        let body = "2019-08-01 10:00,e1,F,A,1,r,ip,p\n2019-08-01 11:00,e2,F,A,1,r,ip,p\n";
        let with = parse_str(&format!("{HEADER}{body}"), Dialect::Excel, true);
        assert_eq!(with.failures, vec![]);
        assert_eq!(rows(&with), vec![2, 3]);
        assert_eq!(with.rows[0].idp_event_id, "e1");

        // Without the tag, the first line is data and numbering starts at 1.
        let without = parse_str(body, Dialect::Excel, false);
        assert_eq!(without.failures, vec![]);
        assert_eq!(rows(&without), vec![1, 2]);
        assert_eq!(without.rows[0].idp_event_id, "e1");

        // A header read as data is a failed row.
        let header_as_data = parse_str(&format!("{HEADER}{body}"), Dialect::Excel, false);
        assert_eq!(
            header_as_data.failures,
            vec![
                row_failure(1, "timestamp", &TimestampError::Unrecognised.to_string()),
                row_failure(1, "contra_score", "is not a whole number"),
            ]
        );
        assert_eq!(rows(&header_as_data), vec![2, 3]);
    }

    #[test]
    fn empty_file_and_header_only_file_have_no_rows() {
        assert_eq!(parse_str("", Dialect::Excel, true), Parsed::default());
        assert_eq!(parse_str(HEADER, Dialect::Excel, true), Parsed::default());
        assert_eq!(parse_str("\n\n", Dialect::Excel, false), Parsed::default());
    }

    const TAB_FILE: &str = "timestamp\tidp_event_id\tfid_code\tcontra_indicators\tcontra_score\trequest_id\tclient_ip_address\tpid\n\
        2019-08-01 10:00\te1\tF01\tA01,B02\t3\tr1\t192.0.2.1\tp1\n\
        15/01/2019 10:00\te2\tF02\t\"C03\nD04\"\t\tr2\t192.0.2.2\tp2\n";

    #[test]
    fn tab_file_reads_with_excel_tab() {
        let parsed = parse_str(TAB_FILE, Dialect::ExcelTab, true);
        assert_eq!(parsed.failures, vec![]);
        assert_eq!(rows(&parsed), vec![2, 3]);
        assert_eq!(parsed.rows[0].contra_indicators, ["A01", "B02"]);
        assert_eq!(parsed.rows[0].client_ip_address, "192.0.2.1");
        assert_eq!(parsed.rows[1].time_stamp, at("2019-01-15 10:00:00"));
        assert_eq!(parsed.rows[1].contra_indicators, ["C03", "D04"]);
        assert_eq!(parsed.rows[1].contra_score, 0);
        assert_eq!(parsed.rows[1].pid, "p2");
    }

    #[test]
    fn tab_file_under_excel_fails_on_column_count() {
        let parsed = parse_str(TAB_FILE, Dialect::Excel, true);
        assert_eq!(parsed.rows, vec![]);
        // Row 2 holds one comma (inside its codes). In row 3 the quote is
        // mid-field, so it is literal and the line break inside it ends the
        // record: the rest of that line is row 4.
        assert_eq!(
            parsed.failures,
            vec![
                row_failure(2, ROW_EXCEPTION, "expected 8 columns, found 2"),
                row_failure(3, ROW_EXCEPTION, "expected 8 columns, found 1"),
                row_failure(4, ROW_EXCEPTION, "expected 8 columns, found 1"),
            ]
        );
    }

    #[test]
    fn comma_file_under_excel_tab_fails_on_column_count() {
        let parsed = parse_str(
            "2019-08-01 10:00,e1,F,A,1,r,ip,p\n",
            Dialect::ExcelTab,
            false,
        );
        assert_eq!(parsed.rows, vec![]);
        assert_eq!(
            parsed.failures,
            vec![row_failure(1, ROW_EXCEPTION, "expected 8 columns, found 1")]
        );
    }

    #[test]
    fn unix_and_excel_read_quoted_files_alike() {
        let text = format!(
            "{HEADER}\"2019-08-01 10:00\",\"e1\",\"F01\",\"A01\nB02\",\"7\",\"r \"\"1\"\"\",\"192.0.2.1\",\"p,1\"\r\n\
             \"2019-08-01 11:00\",\"e2\",\"F01\",\"\",\"\",\"\",\"\",\"\"\r\n"
        );
        let unix = parse_str(&text, Dialect::Unix, true);
        assert_eq!(unix.failures, vec![]);
        assert_eq!(rows(&unix), vec![2, 3]);
        assert_eq!(unix.rows[0].contra_indicators, ["A01", "B02"]);
        assert_eq!(unix.rows[0].contra_score, 7);
        assert_eq!(unix.rows[0].request_id, "r \"1\"");
        assert_eq!(unix.rows[0].pid, "p,1");
        assert_eq!(unix.rows[1].pid, "");
        assert_eq!(parse_str(&text, Dialect::Excel, true), unix);
    }

    #[test]
    fn embedded_newline_splits_contra_indicators_and_counts_one_record() {
        let parsed = parse_str(
            "2019-08-01 10:00,e1,F,\"A01\nB02\",1,r,ip,p\r\n\
             2019-08-01 10:00,e2,F,\"A01\r\nB02,\nC03\",1,r,ip,p\r\n\
             2019-08-01 10:00,e3,F,A01,1,r,ip,p\r\n",
            Dialect::Excel,
            false,
        );
        assert_eq!(parsed.failures, vec![]);
        assert_eq!(rows(&parsed), vec![1, 2, 3]);
        assert_eq!(parsed.rows[0].contra_indicators, ["A01", "B02"]);
        assert_eq!(parsed.rows[1].contra_indicators, ["A01", "B02", "C03"]);
        assert_eq!(parsed.rows[2].contra_indicators, ["A01"]);
    }

    #[test]
    fn contra_indicators_are_trimmed_blanks_dropped_repeats_kept() {
        assert_eq!(
            split_contra_indicators(" A01 , B02,,A01\n\nA01 "),
            ["A01", "B02", "A01", "A01"]
        );
        assert!(split_contra_indicators("   ").is_empty());
        assert!(split_contra_indicators(" , \n ,").is_empty());
        assert!(split_contra_indicators("").is_empty());

        let parsed = parse_str(
            "2019-08-01 10:00,e1,F,\"A01,A01,B02,A01\",1,r,ip,p\n\
             2019-08-01 10:00,e2,F,   ,1,r,ip,p\n",
            Dialect::Excel,
            false,
        );
        assert_eq!(parsed.failures, vec![]);
        assert_eq!(
            parsed.rows[0].contra_indicators,
            ["A01", "A01", "B02", "A01"]
        );
        assert!(parsed.rows[1].contra_indicators.is_empty());
    }

    #[test]
    fn blank_or_space_only_score_is_zero() {
        let parsed = parse_str(
            "2019-08-01 10:00,e1,F,A,,r,ip,p\n2019-08-01 10:00,e2,F,A,   ,r,ip,p\n",
            Dialect::Excel,
            false,
        );
        assert_eq!(parsed.failures, vec![]);
        assert_eq!(
            parsed
                .rows
                .iter()
                .map(|r| r.contra_score)
                .collect::<Vec<_>>(),
            [0, 0]
        );
    }

    #[test]
    fn scores_are_trimmed_integers_and_may_be_negative() {
        for (text, want) in [
            ("-3", -3),
            (" 42 ", 42),
            ("+5", 5),
            ("0", 0),
            ("2147483647", i32::MAX),
            ("-2147483648", i32::MIN),
        ] {
            assert_eq!(parse_score(text), Ok(want), "{text:?}");
        }
        let parsed = parse_str("2019-08-01 10:00,e1,F,A,-3,r,ip,p\n", Dialect::Excel, false);
        assert_eq!(parsed.rows[0].contra_score, -3);
    }

    #[test]
    fn non_integer_scores_fail() {
        for text in ["1.5", "abc", "3e2", "1,000", "- 3", "0x10", "--1"] {
            assert_eq!(parse_score(text), Err("is not a whole number"), "{text:?}");
        }
        for text in ["2147483648", "-2147483649"] {
            assert_eq!(
                parse_score(text),
                Err("is outside the range of a 32-bit integer"),
                "{text:?}"
            );
        }
        let parsed = parse_str(
            "2019-08-01 10:00,e1,F,A,1.5,r,ip,p\n",
            Dialect::Excel,
            false,
        );
        assert_eq!(parsed.rows, vec![]);
        assert_eq!(
            parsed.failures,
            vec![row_failure(1, "contra_score", "is not a whole number")]
        );
    }

    #[test]
    fn too_few_and_too_many_columns_fail_the_row() {
        let parsed = parse_str(
            &format!(
                "{HEADER}2019-08-01 10:00,e1,F,A,1\n\
                 2019-08-01 10:00,e2,F,A,1,r,ip,p,extra\n\
                 2019-08-01 10:00,e3,F,A,1,r,ip,p\n\
                 2019-08-01 10:00,e4,F,A,1,r,ip,p,\n"
            ),
            Dialect::Excel,
            true,
        );
        assert_eq!(rows(&parsed), vec![4]);
        assert_eq!(
            parsed.failures,
            vec![
                row_failure(2, ROW_EXCEPTION, "expected 8 columns, found 5"),
                row_failure(3, ROW_EXCEPTION, "expected 8 columns, found 9"),
                row_failure(5, ROW_EXCEPTION, "expected 8 columns, found 9"),
            ]
        );
    }

    #[test]
    fn every_bad_row_and_field_is_reported_with_its_row_number() {
        let parsed = parse_str(
            &format!(
                "{HEADER}2019-08-01 10:00,e1,F,A,1,r,ip,p\n\
                 01/08/2019 10:00,e2,F,A,1,r,ip,p\n\
                 \n\
                 2019-08-01 10:00,e3,F,A,x,r,ip,p\n\
                 2019-08-01,e4,F,A,one,r,ip,p\n\
                 2019-08-01 10:00,e5,F,A,1\n\
                 2019-08-01 10:00,e6,F,\"A\nB\",1,r,ip,p\n\
                 ,e7,F,A,1,r,ip,p\n\
                 15/01/2019 10:00,e8,F,A,1,r,ip,p\n"
            ),
            Dialect::Excel,
            true,
        );
        // The blank line is not a record, so it takes no row number.
        assert_eq!(rows(&parsed), vec![2, 7, 9]);
        assert_eq!(
            parsed
                .rows
                .iter()
                .map(|r| r.idp_event_id.as_str())
                .collect::<Vec<_>>(),
            ["e1", "e6", "e8"]
        );
        assert_eq!(
            parsed.failures,
            vec![
                row_failure(
                    3,
                    "timestamp",
                    &TimestampError::AmbiguousDayMonth.to_string()
                ),
                row_failure(4, "contra_score", "is not a whole number"),
                row_failure(5, "timestamp", &TimestampError::DateOnly.to_string()),
                row_failure(5, "contra_score", "is not a whole number"),
                row_failure(6, ROW_EXCEPTION, "expected 8 columns, found 5"),
                row_failure(8, "timestamp", &TimestampError::Blank.to_string()),
            ]
        );
    }

    #[test]
    fn invalid_utf8_fails_its_row_and_reading_goes_on() {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"2019-08-01 10:00,e1,F,A,1,r,ip,p\xff\n");
        bytes.extend_from_slice(b"2019-08-01 10:00,\xc3(,F,A,1,r\xe2\x82,ip,p\n");
        bytes.extend_from_slice(b"2019-08-01 10:00,e3,F,A,1,r,ip,caf\xc3\xa9\n");
        let parsed = parse(&bytes, &upload(Dialect::Excel, true));
        assert_eq!(rows(&parsed), vec![4]);
        assert_eq!(parsed.rows[0].pid, "café");
        assert_eq!(
            parsed.failures,
            vec![
                row_failure(2, ROW_EXCEPTION, "not valid UTF-8 in column `pid`"),
                row_failure(
                    3,
                    ROW_EXCEPTION,
                    "not valid UTF-8 in column `idp_event_id`, `request_id`"
                ),
            ]
        );
    }

    #[test]
    fn nul_characters_fail_their_column() {
        let parsed = parse_str(
            "2019-08-01 10:00,e\x001,F,\"A\x00\",1,r,ip,p\x00\n\
             2019-08-01 10:00,e2,F,A,1,r,ip,p\n\
             2019-08-01 10:00\x00,e3,F,A,1\x00,r,ip,p\n",
            Dialect::Excel,
            false,
        );
        assert_eq!(rows(&parsed), vec![2]);
        let nul = "contains a NUL character, which cannot be stored";
        assert_eq!(
            parsed.failures,
            vec![
                row_failure(1, "idp_event_id", nul),
                row_failure(1, "contra_indicators", nul),
                row_failure(1, "pid", nul),
                row_failure(3, "timestamp", &TimestampError::Unrecognised.to_string()),
                row_failure(3, "contra_score", "is not a whole number"),
            ]
        );
    }

    #[test]
    fn leading_byte_order_mark_is_dropped() {
        let mut bytes = UTF8_BOM.to_vec();
        bytes.extend_from_slice(b"2019-08-01 10:00,e1,F,A,1,r,ip,p\n");
        let parsed = parse(&bytes, &upload(Dialect::Excel, false));
        assert_eq!(parsed.failures, vec![]);
        assert_eq!(parsed.rows[0].time_stamp, at("2019-08-01 10:00:00"));
    }

    #[test]
    fn upload_timezone_does_not_change_stored_times() {
        let text = "2019-08-01 10:00,e1,F,A,1,r,ip,p\n2019-08-01 10:00+0200,e2,F,A,1,r,ip,p\n";
        let london = parse_str(text, Dialect::Excel, false);
        let mut elsewhere = upload(Dialect::Excel, false);
        elsewhere.timezone = chrono_tz::America::New_York;
        assert_eq!(parse(text.as_bytes(), &elsewhere), london);
        assert_eq!(london.rows[0].time_stamp, at("2019-08-01 10:00:00"));
        assert_eq!(london.rows[1].time_stamp, at("2019-08-01 08:00:00"));
    }

    #[test]
    fn failure_messages_do_not_repeat_values() {
        let secret = "Zq9";
        let parsed = parse_str(
            &format!(
                "{HEADER}{secret}2019,e,F,A,{secret},r,ip,p\n\
                 {secret},{secret}\n\
                 2019-08-01 10:00{secret},e,F,A,1{secret},r,ip,p\n"
            ),
            Dialect::Excel,
            true,
        );
        assert_eq!(parsed.failures.len(), 5);
        for failure in &parsed.failures {
            assert!(!failure.message.contains(secret), "{failure:?}");
            assert!(!failure.field.contains(secret), "{failure:?}");
        }
    }

    // ---- tags ----

    #[test]
    fn tags_default_timezone_dialect_and_header() {
        let upload =
            Upload::from_tags([("idp", "https://idp.example"), ("username", "jo")]).unwrap();
        assert_eq!(
            upload,
            Upload {
                idp: "https://idp.example".into(),
                username: "jo".into(),
                timezone: chrono_tz::Europe::London,
                dialect: Dialect::Excel,
                has_header: true,
            }
        );
    }

    #[test]
    fn tags_set_every_field_and_unknown_tags_are_ignored() {
        let upload = Upload::from_tags([
            ("idp", "https://idp.example"),
            ("username", "jo"),
            ("timezone", "America/New_York"),
            ("dialect", "excel-tab"),
            ("has_header", "no"),
            ("colour", "blue"),
            ("IDP", "ignored: tag keys are case-sensitive"),
        ])
        .unwrap();
        assert_eq!(upload.idp, "https://idp.example");
        assert_eq!(upload.timezone, chrono_tz::America::New_York);
        assert_eq!(upload.dialect, Dialect::ExcelTab);
        assert!(!upload.has_header);
    }

    fn with(tag: &'static str, value: &'static str) -> Result<Upload, TagError> {
        Upload::from_tags([("idp", "i"), ("username", "u"), (tag, value)])
    }

    #[test]
    fn dialect_tag_values() {
        for (value, want) in [
            ("excel", Dialect::Excel),
            ("excel-tab", Dialect::ExcelTab),
            ("unix", Dialect::Unix),
        ] {
            assert_eq!(with("dialect", value).unwrap().dialect, want);
        }
    }

    #[test]
    fn has_header_tag_values() {
        for value in ["true", "TRUE", "True", "1", "y", "Y", "yes", "YES", "yEs"] {
            assert!(with("has_header", value).unwrap().has_header, "{value:?}");
        }
        for value in ["false", "0", "n", "no", "", " true", "yes ", "on", "2"] {
            assert!(!with("has_header", value).unwrap().has_header, "{value:?}");
        }
    }

    #[test]
    fn unknown_dialect_fails_and_lists_accepted_values() {
        for value in ["tsv-secret", "Excel", ""] {
            let err = with("dialect", value).unwrap_err();
            assert_eq!(err.tag, "dialect");
            assert_eq!(
                err.to_string(),
                "object tag `dialect`: is not a known dialect (accepted: excel, excel-tab, unix)"
            );
        }
    }

    #[test]
    fn unknown_timezone_fails() {
        for value in ["Mars/Olympus_Mons", "europe/london", "", "+01:00"] {
            let err = with("timezone", value).unwrap_err();
            assert_eq!(err.tag, "timezone", "{value:?}");
            assert!(!err.problem.contains("Mars"), "{err}");
        }
        assert_eq!(with("timezone", "UTC").unwrap().timezone, chrono_tz::UTC);
    }

    #[test]
    fn missing_or_blank_idp_and_username_fail() {
        type Tags = &'static [(&'static str, &'static str)];
        let cases: [(Tags, &str, &str); 5] = [
            (&[("username", "u")], "idp", "is missing"),
            (&[("idp", "  "), ("username", "u")], "idp", "is blank"),
            (&[("idp", "i")], "username", "is missing"),
            (&[("idp", "i"), ("username", "")], "username", "is blank"),
            (&[], "idp", "is missing"),
        ];
        for (tags, tag, problem) in cases {
            let err = Upload::from_tags(tags.iter().copied()).unwrap_err();
            assert_eq!(
                err,
                TagError {
                    tag,
                    problem: problem.into()
                },
                "{tags:?}"
            );
        }
        assert_eq!(
            Upload::from_tags([("username", "u")])
                .unwrap_err()
                .to_string(),
            "object tag `idp`: is missing"
        );
    }

    #[test]
    fn tag_errors_do_not_repeat_values() {
        let secret = "Zq9-value";
        for tag in ["dialect", "timezone"] {
            let err =
                Upload::from_tags([("idp", "i"), ("username", "u"), (tag, secret)]).unwrap_err();
            assert!(!err.to_string().contains(secret), "{err}");
        }
    }
}
