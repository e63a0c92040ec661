//! Tests of [`super`]: whole files read, each rule of each column.

use super::*;
use crate::functions::fraud_csv::tags::Dialect;
use crate::functions::fraud_csv::timestamp::TimestampError;

const HEADER: &str = "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid\n";

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn upload(dialect: Dialect, has_header: bool) -> UploadTags {
    UploadTags {
        idp: "https://idp.example/entity".into(),
        username: "uploader".into(),
        timezone: chrono_tz::Europe::London,
        dialect,
        date_order: DateOrder::DayFirst,
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
        vec![ReportRow {
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
             08/13/2019 10:00,e2,F,A,1,r,ip,p\n\
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
                &TimestampError::NotInOrder(DateOrder::DayFirst).to_string()
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
fn slash_dates_read_in_the_uploads_date_order() {
    let text = "05/08/2019 11:54,e1,F,A,1,r,ip,p\n25/12/2019 10:00,e2,F,A,1,r,ip,p\n";
    let day_first = parse_str(text, Dialect::Excel, false);
    assert_eq!(day_first.failures, vec![]);
    assert_eq!(day_first.rows[0].time_stamp, at("2019-08-05 11:54:00"));
    assert_eq!(day_first.rows[1].time_stamp, at("2019-12-25 10:00:00"));

    let mut tags = upload(Dialect::Excel, false);
    tags.date_order = DateOrder::MonthFirst;
    let month_first = parse(text.as_bytes(), &tags);
    assert_eq!(rows(&month_first), vec![1]);
    assert_eq!(month_first.rows[0].time_stamp, at("2019-05-08 11:54:00"));
    assert_eq!(
        month_first.failures,
        vec![row_failure(
            2,
            "timestamp",
            "is not a valid date in month-first (MM/DD/YYYY) order \
             (the upload's `date-order` tag sets the order)"
        )]
    );
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
