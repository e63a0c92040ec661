-- The schema the original service's migrations leave behind, table for
-- table: names, types, nullability and keys match, so a database built by
-- either is the same to every function. time_stamp columns hold UTC.

CREATE SCHEMA IF NOT EXISTS audit;
CREATE SCHEMA IF NOT EXISTS billing;
CREATE SCHEMA IF NOT EXISTS idp_data;

-- Every valid event.
CREATE TABLE audit.audit_events (
    event_id            text      NOT NULL,
    time_stamp          timestamp NOT NULL,
    originating_service text      NOT NULL,
    session_id          text,
    event_type          text      NOT NULL,
    details             jsonb,
    PRIMARY KEY (event_id, time_stamp)
);
CREATE INDEX audit_events_event_id_idx   ON audit.audit_events (event_id);
CREATE INDEX audit_events_session_id_idx ON audit.audit_events (session_id);
CREATE INDEX audit_events_time_stamp_idx ON audit.audit_events (time_stamp);

-- Billable authentications (session_event / idp_authn_succeeded).
CREATE TABLE billing.billing_events (
    time_stamp                   timestamp NOT NULL,
    session_id                   text      NOT NULL,
    hashed_persistent_id         text      NOT NULL,
    request_id                   text      NOT NULL,
    idp_entity_id                text      NOT NULL,
    minimum_level_of_assurance   text      NOT NULL,
    provided_level_of_assurance  text      NOT NULL,
    event_id                     text      NOT NULL PRIMARY KEY,
    transaction_entity_id        text,
    preferred_level_of_assurance text
);
CREATE INDEX billing_events_hashed_persistent_id_idx ON billing.billing_events (hashed_persistent_id);
CREATE INDEX billing_events_hashed_persistent_id_time_stamp_idx
    ON billing.billing_events (hashed_persistent_id, time_stamp);
CREATE INDEX billing_events_provided_loa_idx ON billing.billing_events (provided_level_of_assurance);
CREATE INDEX billing_events_session_id_idx   ON billing.billing_events (session_id);
CREATE INDEX billing_events_time_stamp_idx   ON billing.billing_events (time_stamp);

-- Fraud detections (session_event / fraud_detected).
CREATE TABLE billing.fraud_events (
    time_stamp            timestamp NOT NULL,
    session_id            text      NOT NULL,
    hashed_persistent_id  text      NOT NULL,
    entity_id             text      NOT NULL,
    fraud_event_id        text      NOT NULL,
    fraud_indicator       text      NOT NULL,
    event_id              text      NOT NULL PRIMARY KEY,
    transaction_entity_id text      NOT NULL,
    request_id            text
);
CREATE INDEX fraud_events_hashed_persistent_id_idx ON billing.fraud_events (hashed_persistent_id);
CREATE INDEX fraud_events_session_id_idx           ON billing.fraud_events (session_id);
CREATE INDEX fraud_events_time_stamp_idx           ON billing.fraud_events (time_stamp);

-- Written by billing reconciliation, never by these functions.
CREATE TABLE billing.billing_status (
    event_id       text NOT NULL PRIMARY KEY
        REFERENCES billing.billing_events (event_id) ON UPDATE CASCADE ON DELETE RESTRICT,
    billing_status text NOT NULL
);

-- IdP fraud-report uploads: one session per file.
CREATE TABLE idp_data.upload_sessions (
    id                bigserial PRIMARY KEY,
    time_stamp        timestamp NOT NULL,
    source_file_name  text      NOT NULL,
    idp_entity_id     text      NOT NULL,
    userid            text      NOT NULL,
    passed_validation boolean   NOT NULL
);

CREATE TABLE idp_data.upload_session_validation_failures (
    id                bigserial PRIMARY KEY,
    upload_session_id bigint NOT NULL
        REFERENCES idp_data.upload_sessions (id) ON UPDATE RESTRICT ON DELETE RESTRICT,
    "row"             bigint NOT NULL,
    field             text   NOT NULL,
    message           text   NOT NULL
);

-- No unique key on (idp_entity_id, idp_event_id): the same event may be
-- uploaded twice, as in the original.
CREATE TABLE idp_data.idp_fraud_events (
    id                bigserial PRIMARY KEY,
    idp_entity_id     text      NOT NULL,
    idp_event_id      text      NOT NULL,
    time_stamp        timestamp NOT NULL,
    fid_code          text      NOT NULL,
    request_id        text      NOT NULL,
    pid               text      NOT NULL,
    client_ip_address text      NOT NULL,
    contra_score      integer   NOT NULL,
    upload_session_id bigint    NOT NULL
        REFERENCES idp_data.upload_sessions (id) ON UPDATE RESTRICT ON DELETE RESTRICT
);

CREATE TABLE idp_data.idp_fraud_event_contraindicators (
    idp_fraud_events_id  bigint  NOT NULL
        REFERENCES idp_data.idp_fraud_events (id) ON UPDATE RESTRICT ON DELETE RESTRICT,
    contraindicator_code text    NOT NULL,
    count                integer NOT NULL DEFAULT 1,
    PRIMARY KEY (idp_fraud_events_id, contraindicator_code)
);
