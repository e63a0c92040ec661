//! The upload's settings, read from its S3 object tags before any row.
//!
//! Errors name the tag and the rule, never the value.

use super::timestamp::DateOrder;

const DEFAULT_TIMEZONE: chrono_tz::Tz = chrono_tz::Europe::London;
const DATE_ORDERS: &str = "dmy, mdy";

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

    /// The field separator the dialect reads.
    pub fn delimiter(self) -> u8 {
        match self {
            Self::Excel | Self::Unix => b',',
            Self::ExcelTab => b'\t',
        }
    }
}

/// What the object's tags say about an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadTags {
    /// Tag `idp` (required, non-blank): the IdP entity id.
    pub idp: String,
    /// Tag `username` (required, non-blank).
    pub username: String,
    /// Tag `timezone`: an IANA name, default Europe/London.
    pub timezone: chrono_tz::Tz,
    /// Tag `dialect`: `excel` (default), `excel-tab` or `unix`.
    pub dialect: Dialect,
    /// Tag `date-order`: `dmy` (default: UK providers write day-first) or
    /// `mdy`, the order of day and month in slash dates.
    pub date_order: DateOrder,
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

impl UploadTags {
    /// Reads the upload's settings from its S3 object tags. Unknown tags are
    /// ignored; if a tag appears twice, the last one counts.
    pub fn from_tags<'a>(
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, TagError> {
        let mut idp = None;
        let mut username = None;
        let mut timezone = None;
        let mut dialect = None;
        let mut date_order = None;
        let mut has_header = None;
        for (key, value) in tags {
            match key {
                "idp" => idp = Some(value),
                "username" => username = Some(value),
                "timezone" => timezone = Some(value),
                "dialect" => dialect = Some(value),
                "date-order" => date_order = Some(value),
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
        let date_order = match date_order {
            None | Some("dmy") => DateOrder::DayFirst,
            Some("mdy") => DateOrder::MonthFirst,
            Some(_) => {
                return Err(TagError::new(
                    "date-order",
                    format!("is not a known date order (accepted: {DATE_ORDERS})"),
                ));
            }
        };
        Ok(Self {
            idp: required("idp", idp)?,
            username: required("username", username)?,
            timezone,
            dialect,
            date_order,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_default_timezone_dialect_and_header() {
        let upload =
            UploadTags::from_tags([("idp", "https://idp.example"), ("username", "jo")]).unwrap();
        assert_eq!(
            upload,
            UploadTags {
                idp: "https://idp.example".into(),
                username: "jo".into(),
                timezone: chrono_tz::Europe::London,
                dialect: Dialect::Excel,
                date_order: DateOrder::DayFirst,
                has_header: true,
            }
        );
    }

    #[test]
    fn tags_set_every_field_and_unknown_tags_are_ignored() {
        let upload = UploadTags::from_tags([
            ("idp", "https://idp.example"),
            ("username", "jo"),
            ("timezone", "America/New_York"),
            ("dialect", "excel-tab"),
            ("date-order", "mdy"),
            ("has_header", "no"),
            ("colour", "blue"),
            ("IDP", "ignored: tag keys are case-sensitive"),
        ])
        .unwrap();
        assert_eq!(upload.idp, "https://idp.example");
        assert_eq!(upload.timezone, chrono_tz::America::New_York);
        assert_eq!(upload.dialect, Dialect::ExcelTab);
        assert_eq!(upload.date_order, DateOrder::MonthFirst);
        assert!(!upload.has_header);
    }

    fn with(tag: &'static str, value: &'static str) -> Result<UploadTags, TagError> {
        UploadTags::from_tags([("idp", "i"), ("username", "u"), (tag, value)])
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
    fn date_order_tag_values() {
        for (value, want) in [("dmy", DateOrder::DayFirst), ("mdy", DateOrder::MonthFirst)] {
            assert_eq!(with("date-order", value).unwrap().date_order, want);
        }
    }

    #[test]
    fn unknown_date_order_fails_and_lists_accepted_values() {
        for value in ["ymd-secret", "DMY", "", "dd/mm/yyyy"] {
            let err = with("date-order", value).unwrap_err();
            assert_eq!(err.tag, "date-order");
            assert_eq!(
                err.to_string(),
                "object tag `date-order`: is not a known date order (accepted: dmy, mdy)"
            );
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
            let err = UploadTags::from_tags(tags.iter().copied()).unwrap_err();
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
            UploadTags::from_tags([("username", "u")])
                .unwrap_err()
                .to_string(),
            "object tag `idp`: is missing"
        );
    }

    #[test]
    fn tag_errors_do_not_repeat_values() {
        let secret = "Zq9-value";
        for tag in ["dialect", "timezone", "date-order"] {
            let err = UploadTags::from_tags([("idp", "i"), ("username", "u"), (tag, secret)])
                .unwrap_err();
            assert!(!err.to_string().contains(secret), "{err}");
        }
    }
}
