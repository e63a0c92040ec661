-- Fraud reports uploaded by identity providers as CSV files.
CREATE SCHEMA IF NOT EXISTS idp_data;

CREATE TABLE idp_data.upload_sessions (
    id                serial    PRIMARY KEY,
    time_stamp        timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    source_file_path  text      NOT NULL,
    idp_entity_id     text      NOT NULL,
    userid            text      NOT NULL,
    passed_validation boolean   NOT NULL DEFAULT false
);

CREATE TABLE idp_data.upload_session_validation_failures (
    upload_session_id integer NOT NULL REFERENCES idp_data.upload_sessions (id),
    row_number        integer NOT NULL,
    field             text,
    message           text    NOT NULL
);

CREATE TABLE idp_data.idp_fraud_events (
    id                serial    PRIMARY KEY,
    idp_entity_id     text      NOT NULL,
    idp_event_id      text      NOT NULL,
    time_stamp        timestamp NOT NULL,
    fid_code          text,
    request_id        text,
    client_ip_address text,
    pid               text,
    contra_score      integer   NOT NULL DEFAULT 0,
    upload_session_id integer   REFERENCES idp_data.upload_sessions (id),
    UNIQUE (idp_entity_id, idp_event_id)
);

CREATE TABLE idp_data.idp_fraud_event_contraindicators (
    idp_fraud_events_id  integer NOT NULL REFERENCES idp_data.idp_fraud_events (id),
    contraindicator_code text    NOT NULL,
    count                integer NOT NULL DEFAULT 1,
    PRIMARY KEY (idp_fraud_events_id, contraindicator_code)
);
