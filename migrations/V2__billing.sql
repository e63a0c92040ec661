-- Billable authentications and fraud detections, derived from session events.
CREATE SCHEMA IF NOT EXISTS billing;

CREATE TABLE billing.billing_events (
    event_id                     text      PRIMARY KEY,
    time_stamp                   timestamp NOT NULL,
    session_id                   text      NOT NULL,
    hashed_persistent_id         text      NOT NULL,
    request_id                   text      NOT NULL,
    idp_entity_id                text      NOT NULL,
    minimum_level_of_assurance   text      NOT NULL,
    preferred_level_of_assurance text,
    provided_level_of_assurance  text      NOT NULL,
    transaction_entity_id        text
);

CREATE INDEX billing_events_time_stamp_idx           ON billing.billing_events (time_stamp);
CREATE INDEX billing_events_session_id_idx           ON billing.billing_events (session_id);
CREATE INDEX billing_events_hashed_persistent_id_idx ON billing.billing_events (hashed_persistent_id);
CREATE INDEX billing_events_provided_loa_idx         ON billing.billing_events (provided_level_of_assurance);

CREATE TABLE billing.fraud_events (
    event_id              text      PRIMARY KEY,
    time_stamp            timestamp NOT NULL,
    session_id            text      NOT NULL,
    hashed_persistent_id  text      NOT NULL,
    request_id            text,
    entity_id             text      NOT NULL,
    fraud_event_id        text      NOT NULL,
    fraud_indicator       text      NOT NULL,
    transaction_entity_id text      NOT NULL
);

CREATE TABLE billing.billing_status (
    event_id       text PRIMARY KEY REFERENCES billing.billing_events (event_id),
    billing_status text NOT NULL
);
