-- Every valid event lands here. time_stamp holds UTC.
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.audit_events (
    event_id            text      NOT NULL,
    event_type          text      NOT NULL,
    time_stamp          timestamp NOT NULL,
    originating_service text      NOT NULL,
    session_id          text,
    details             jsonb,
    PRIMARY KEY (event_id, time_stamp)
);

CREATE INDEX audit_events_time_stamp_idx ON audit.audit_events (time_stamp);
CREATE INDEX audit_events_event_id_idx   ON audit.audit_events (event_id);
CREATE INDEX audit_events_session_id_idx ON audit.audit_events (session_id);
