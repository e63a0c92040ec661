//! The tracing layer that writes the lines: it keeps the request ID of
//! lambda_runtime's invocation span (and nothing else of any span), and
//! writes each enabled event as one line.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::render::{Line, Value};
use super::{Format, Settings};

/// The field of lambda_runtime's per-invocation span that names the request.
const REQUEST_ID: &str = "requestId";

/// Where finished lines go (stdout for Lambda, stderr for the CLI, a buffer
/// in tests). Each call gets one whole line.
pub type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

pub struct Lines {
    settings: Settings,
    sink: Sink,
}

impl Lines {
    pub fn new(settings: Settings, sink: Sink) -> Self {
        Self { settings, sink }
    }

    /// Spans only if they carry a request ID; events by level, where other
    /// crates never go below INFO (their debug output can hold request
    /// details, and would multiply the lines).
    fn wants(&self, metadata: &Metadata<'_>) -> bool {
        if metadata.is_span() {
            return metadata.fields().field(REQUEST_ID).is_some();
        }
        let ours =
            metadata.target() == "bootstrap" || metadata.target().starts_with("event_recorder");
        let limit = match ours {
            true => self.settings.level,
            false => self.settings.level.min(LevelFilter::INFO),
        };
        limit >= *metadata.level()
    }
}

/// The request ID, kept in its span's extensions.
struct RequestId(String);

impl<S> Layer<S> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.wants(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // The invocation span is INFO: it must stay enabled at any level.
        Some(self.settings.level.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = RequestIdVisitor(None);
        attributes.record(&mut found);
        if let (Some(request_id), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(request_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let request_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
        });
        let line = Line {
            level: *event.metadata().level(),
            message: &fields.message,
            fields: &fields.fields,
            request_id: request_id.as_deref(),
        };
        let timestamp = timestamp();
        let text = match self.settings.format {
            Format::Json => line.json(&timestamp),
            Format::Text => line.text(&timestamp),
        };
        (self.sink)(text.as_bytes());
    }
}

/// Now, as RFC 3339 in UTC with milliseconds (as Lambda's own lines).
fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

struct RequestIdVisitor(Option<String>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == REQUEST_ID {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == REQUEST_ID {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// An event's message and its other fields, in the order given.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Fields {
    fn bare(&mut self, field: &Field, value: impl ToString) {
        self.fields
            .push((field.name(), Value::Bare(value.to_string())));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            name => self.fields.push((name, Value::Text(value.to_owned()))),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            name => self.fields.push((name, Value::Text(format!("{value:?}")))),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match value.is_finite() {
            true => self.bare(field, value),
            false => self
                .fields
                .push((field.name(), Value::Text(value.to_string()))),
        }
    }
}
