//! The `timestamp` column of a fraud report, read with no I/O.
//!
//! A value without an offset is wall-clock time and is stored as written; a
//! value with an offset or `Z` is stored as UTC. The upload's `timezone` tag
//! is validated but changes no stored value: the service this one replaces
//! stored them so, and rows already stored keep their meaning.
//!
//! Slash dates are read in the upload's [`DateOrder`]: day-first unless its
//! tags say month-first. A date impossible in that order fails rather than
//! being read in the other one.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

/// The order of day and month in a slash date (`05/08/2019`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    /// `DD/MM/YYYY`, as UK identity providers write dates.
    DayFirst,
    /// `MM/DD/YYYY`.
    MonthFirst,
}

impl std::fmt::Display for DateOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DayFirst => "day-first (DD/MM/YYYY)",
            Self::MonthFirst => "month-first (MM/DD/YYYY)",
        })
    }
}

/// Why a timestamp was refused. Each variant is one rule; none carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("is blank")]
    Blank,
    #[error(
        "is not in a known form (YYYY-MM-DD HH:MM[:SS[.fraction]] with an optional offset, \
         or DD/MM/YYYY HH:MM[:SS], month first if the upload's `date-order` is mdy)"
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
    /// The number in the month's place is above 12.
    #[error("is not a valid date in {0} order (the upload's `date-order` tag sets the order)")]
    NotInOrder(DateOrder),
}

/// Reads a timestamp as the rows hold it (see the module doc for what is
/// stored). Accepted, after trimming:
/// - ISO 8601: `YYYY-MM-DD`, `T` or a space, `HH:MM`, optional `:SS`, optional
///   fraction of 1–9 digits (kept to the microsecond), then optionally one
///   space and an offset `Z`, `±HH:MM`, `±HHMM` or `±HH`;
/// - a slash date `D/M/YYYY` (day and month of 1 or 2 digits) in `order`,
///   then a space and `HH:MM[:SS]`.
pub fn parse_timestamp(text: &str, order: DateOrder) -> Result<NaiveDateTime, TimestampError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TimestampError::Blank);
    }
    let b = text.as_bytes();
    if b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        iso(Cursor::new(b))
    } else if text.contains('/') {
        slashed(Cursor::new(b), order)
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

fn slashed(mut c: Cursor, order: DateOrder) -> Result<NaiveDateTime, TimestampError> {
    use TimestampError::Unrecognised;
    let (first, second, year) = slashed_date(&mut c).ok_or(Unrecognised)?;
    if c.done() {
        return Err(TimestampError::DateOnly);
    }
    if !c.eat(b' ') {
        return Err(Unrecognised);
    }
    let (hour, minute) = hour_minute(&mut c).ok_or(Unrecognised)?;
    let seconds = if c.eat(b':') {
        c.digits(2).ok_or(Unrecognised)?
    } else {
        0
    };
    if !c.done() {
        return Err(Unrecognised);
    }
    let (day, month) = match order {
        DateOrder::DayFirst => (first, second),
        DateOrder::MonthFirst => (second, first),
    };
    if month > 12 {
        return Err(TimestampError::NotInOrder(order));
    }
    date_time(year, month, day, hour, minute, seconds, 0)
}

/// `N/N/YYYY` (the first two of 1 or 2 digits) as the three numbers, in file order.
fn slashed_date(c: &mut Cursor) -> Option<(u32, u32, u32)> {
    let first = c.one_or_two_digits()?;
    c.eat(b'/').then_some(())?;
    let second = c.one_or_two_digits()?;
    c.eat(b'/').then_some(())?;
    Some((first, second, c.digits(4)?))
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
    use DateOrder::{DayFirst, MonthFirst};

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn iso_with_t_or_space_with_or_without_seconds() {
        for (text, want) in [
            ("2019-08-01T10:00", "2019-08-01 10:00:00"),
            ("2019-08-01 10:00", "2019-08-01 10:00:00"),
            ("2019-08-01T10:00:30", "2019-08-01 10:00:30"),
            ("2019-08-01 23:59:59", "2019-08-01 23:59:59"),
            ("  2019-08-01 10:00\t", "2019-08-01 10:00:00"),
        ] {
            assert_eq!(parse_timestamp(text, DayFirst), Ok(at(want)), "{text:?}");
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
            assert_eq!(parse_timestamp(text, DayFirst), Ok(at(want)), "{text:?}");
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
            assert_eq!(parse_timestamp(text, DayFirst), Ok(at(want)), "{text:?}");
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
            assert_eq!(parse_timestamp(text, DayFirst), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn day_first_dates_parse() {
        for (text, want) in [
            ("15/01/2019 10:00", "2019-01-15 10:00:00"),
            ("15/1/2019 10:00:30", "2019-01-15 10:00:30"),
            ("05/05/2019 10:00", "2019-05-05 10:00:00"),
            ("5/5/2019 09:05", "2019-05-05 09:05:00"),
            ("31/12/2019 23:59:59", "2019-12-31 23:59:59"),
            ("13/12/2019 00:00", "2019-12-13 00:00:00"),
        ] {
            assert_eq!(parse_timestamp(text, DayFirst), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn day_and_month_both_twelve_or_less_read_day_first() {
        for (text, want) in [
            ("05/08/2019 11:54", "2019-08-05 11:54:00"),
            ("01/08/2019 10:00", "2019-08-01 10:00:00"),
            ("1/8/2019 10:00:00", "2019-08-01 10:00:00"),
            ("12/11/2019 00:00", "2019-11-12 00:00:00"),
        ] {
            assert_eq!(parse_timestamp(text, DayFirst), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn month_first_order_reads_month_first() {
        for (text, want) in [
            ("05/08/2019 11:54", "2019-05-08 11:54:00"),
            ("1/8/2019 10:00:00", "2019-01-08 10:00:00"),
            ("12/11/2019 00:00", "2019-12-11 00:00:00"),
            ("01/15/2019 10:00", "2019-01-15 10:00:00"),
            ("1/31/2019 10:00:30", "2019-01-31 10:00:30"),
            ("5/5/2019 09:05", "2019-05-05 09:05:00"),
            ("12/31/2019 23:59:59", "2019-12-31 23:59:59"),
        ] {
            assert_eq!(parse_timestamp(text, MonthFirst), Ok(at(want)), "{text:?}");
        }
    }

    #[test]
    fn month_first_dates_are_not_day_first() {
        for text in ["01/15/2019 10:00", "1/31/2019 10:00", "13/13/2019 10:00"] {
            assert_eq!(
                parse_timestamp(text, DayFirst),
                Err(TimestampError::NotInOrder(DayFirst)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn day_first_dates_are_not_month_first() {
        for text in ["25/12/2019 10:00", "13/1/2019 10:00:00", "13/13/2019 10:00"] {
            assert_eq!(
                parse_timestamp(text, MonthFirst),
                Err(TimestampError::NotInOrder(MonthFirst)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn dates_impossible_in_their_order_name_the_order_not_the_value() {
        assert_eq!(
            TimestampError::NotInOrder(DayFirst).to_string(),
            "is not a valid date in day-first (DD/MM/YYYY) order \
             (the upload's `date-order` tag sets the order)"
        );
        assert_eq!(
            TimestampError::NotInOrder(MonthFirst).to_string(),
            "is not a valid date in month-first (MM/DD/YYYY) order \
             (the upload's `date-order` tag sets the order)"
        );
        for order in [DayFirst, MonthFirst] {
            let err = parse_timestamp("13/13/2019 10:00", order).unwrap_err();
            assert!(!err.to_string().contains("13"), "{err}");
        }
    }

    #[test]
    fn iso_forms_do_not_depend_on_the_date_order() {
        for text in [
            "2019-08-01T10:00",
            "2019-05-08 11:54:30.25",
            "2019-08-01T22:30:00.5-05:30",
            "2019-12-05 10:00Z",
            "2019-13-01 10:00",
            "2019-08-01",
            "2019-08-01T10",
        ] {
            assert_eq!(
                parse_timestamp(text, MonthFirst),
                parse_timestamp(text, DayFirst),
                "{text:?}"
            );
        }
    }

    #[test]
    fn dates_without_times_fail() {
        for text in ["2019-08-01", "15/01/2019", " 2019-08-01 "] {
            for order in [DayFirst, MonthFirst] {
                assert_eq!(
                    parse_timestamp(text, order),
                    Err(TimestampError::DateOnly),
                    "{text:?} {order:?}"
                );
            }
        }
    }

    #[test]
    fn blank_timestamps_fail() {
        for text in ["", "   ", "\t"] {
            for order in [DayFirst, MonthFirst] {
                assert_eq!(
                    parse_timestamp(text, order),
                    Err(TimestampError::Blank),
                    "{text:?} {order:?}"
                );
            }
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
            for order in [DayFirst, MonthFirst] {
                assert_eq!(
                    parse_timestamp(text, order),
                    Err(TimestampError::Unrecognised),
                    "{text:?} {order:?}"
                );
            }
        }
    }

    #[test]
    fn fractions_longer_than_nine_digits_fail() {
        assert_eq!(
            parse_timestamp("2019-03-01T02:40:40.1234567890Z", DayFirst),
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
            assert_eq!(parse_timestamp(text, DayFirst), Err(want), "{text:?}");
        }
        for (text, want) in [
            ("02/31/2019 10:00", TimestampError::NoSuchDate),
            ("00/00/2019 10:00", TimestampError::NoSuchDate),
            ("01/32/2019 10:00", TimestampError::NoSuchDate),
            ("01/15/2019 25:00", TimestampError::NoSuchTime),
        ] {
            assert_eq!(parse_timestamp(text, MonthFirst), Err(want), "{text:?}");
        }
        assert_eq!(
            parse_timestamp("2020-02-29 10:00", DayFirst),
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
                parse_timestamp(text, DayFirst),
                Err(TimestampError::OffsetOutOfRange),
                "{text:?}"
            );
        }
    }
}
