//! TLS to PostgreSQL as libpq does it: a throwaway CA, a server that takes
//! TCP connections over TLS only, and the real `bootstrap` connecting to it.
//! The server is a cluster of its own (it needs its own config), from
//! local binaries or fetched ones whatever source the rest use (see
//! `server::own_cluster`); both are built with OpenSSL. Binaries without TLS
//! fail these tests: they are not skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use event_recorder::schema;

use crate::support::certs::{self, Pki};
use crate::support::events::{Batch, KEY_B64, audit_event};
use crate::support::function::{Function, init_error};
use crate::support::local::{LocalServer, Options, PASSWORD};
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::server;

async fn tls_server() -> (Pki, LocalServer) {
    let pki = certs::make(&["localhost"]);
    let tls = Some((pki.server_cert.clone(), pki.server_key.clone()));
    let server = std::thread::spawn(move || {
        server::own_cluster(Options {
            tls,
            ..Default::default()
        })
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("TLS tests need PostgreSQL's server binaries with TLS: {e}"));
    let mut client = crate::support::connect(&server.socket_config()).await;
    schema::migrate(&mut client).await.unwrap();
    (pki, server)
}

fn connection(server: &LocalServer, host: &str, tls: &str) -> Vec<(&'static str, String)> {
    let conn = format!(
        "host={host} port={} user=postgres password={PASSWORD} dbname=postgres {tls}",
        server.port()
    );
    vec![
        ("DB_CONNECTION_STRING", conn),
        ("LOCAL_DATA_KEY", KEY_B64.into()),
    ]
}

#[tokio::test]
async fn verify_full_with_the_right_ca_records_events() {
    let (pki, server) = tls_server().await;
    let tls = format!("sslmode=verify-full sslrootcert={}", pki.ca.display());
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &connection(&server, "localhost", &tls));
    assert_all_stored(&api, &function, "a1").await;
    let client = crate::support::connect(&server.socket_config()).await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "the function's session is encrypted"
    );
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM audit.audit_events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}

/// Invokes one event and expects no failed message.
async fn assert_all_stored(api: &RuntimeApi, function: &Function, event_id: &str) {
    let batch = Batch::default().event("m1", &audit_event(event_id));
    let Outcome::Response(r) = api.invoke(&batch.sqs_event()).await else {
        panic!("function error: {}", function.output())
    };
    assert_eq!(
        r["batchItemFailures"],
        serde_json::json!([]),
        "{}",
        function.output()
    );
}

fn assert_tls_failure(message: &str) {
    assert!(
        message.starts_with("DB_CONNECTION_STRING: TLS with the database failed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_wrong_ca_stops_start_up() {
    let (pki, server) = tls_server().await;
    let tls = format!("sslmode=verify-full sslrootcert={}", pki.other_ca.display());
    let message = init_error(&connection(&server, "localhost", &tls)).await;
    assert_tls_failure(&message);
    assert!(message.contains("certificate verify failed"), "{message}");
}

#[tokio::test]
async fn a_wrong_host_name_stops_start_up() {
    let (pki, server) = tls_server().await;
    // The certificate names `localhost`, not 127.0.0.1.
    let tls = format!("sslmode=verify-full sslrootcert={}", pki.ca.display());
    let message = init_error(&connection(&server, "127.0.0.1", &tls)).await;
    assert_tls_failure(&message);
    // verify-ca checks the chain only, so the same address is accepted.
    let tls = format!("sslmode=verify-ca sslrootcert={}", pki.ca.display());
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &connection(&server, "127.0.0.1", &tls));
    assert_all_stored(&api, &function, "x").await;
}

#[tokio::test]
async fn sslmode_disable_is_refused_by_a_tls_only_server() {
    let (_pki, server) = tls_server().await;
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &connection(&server, "127.0.0.1", "sslmode=disable"));
    let Outcome::Response(r) = api
        .invoke(&Batch::default().event("m1", &audit_event("a1")).sqs_event())
        .await
    else {
        panic!("function error")
    };
    assert_eq!(r["batchItemFailures"][0]["itemIdentifier"], "m1");
    let logs = function.output();
    // PostgreSQL 14 and later say "no encryption", 13 says "SSL off".
    assert!(
        logs.contains("no pg_hba.conf entry")
            && (logs.contains("no encryption") || logs.contains("SSL off")),
        "{logs}"
    );
}

/// A login role with a password and the functions' grants on the TLS server;
/// its connection string has no password.
async fn role_on(server: &LocalServer, tls: &str) -> (String, String) {
    let password = "pw-tls-writer-SECRET";
    crate::support::connect(&server.socket_config())
        .await
        .batch_execute(&format!(
            "CREATE ROLE tls_writer LOGIN PASSWORD '{password}';
             GRANT USAGE ON SCHEMA audit, billing TO tls_writer;
             GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA audit, billing TO tls_writer;"
        ))
        .await
        .unwrap();
    let conn = format!(
        "host=localhost port={} user=tls_writer dbname=postgres {tls}",
        server.port()
    );
    (conn, password.to_owned())
}

#[tokio::test]
async fn a_kms_password_goes_over_tls_only() {
    let (_pki, server) = tls_server().await;
    let sdk = crate::secrets::sdk().await;
    let key = crate::secrets::kms_key(&sdk).await;
    let (conn, password) = role_on(&server, "sslmode=require").await;
    let ciphertext = crate::secrets::kms_encrypt(&sdk, &key, password.as_bytes()).await;
    let vars = |conn: &str| {
        crate::secrets::env(&[
            ("DB_CONNECTION_STRING", conn.to_owned()),
            ("LOCAL_DATA_KEY", KEY_B64.into()),
            ("ENCRYPTED_DATABASE_PASSWORD", ciphertext.clone()),
        ])
    };
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &vars(&conn));
    assert_all_stored(&api, &function, "kms-pw").await;
    assert!(!function.output().contains(&password));

    // The default sslmode (prefer) and disable would allow it in clear.
    for weak in ["", " sslmode=prefer", " sslmode=disable"] {
        let conn = conn.replace(" sslmode=require", weak);
        let message = init_error(&vars(&conn)).await;
        assert!(
            message.starts_with("DB_CONNECTION_STRING: the password from ENCRYPTED_DATABASE_PASSWORD is only sent over TLS"),
            "{weak}: {message}"
        );
        assert!(
            message.contains("require, verify-ca or verify-full"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn an_iam_token_goes_over_tls_only() {
    let (_pki, server) = tls_server().await;
    let (conn, _) = role_on(&server, "sslmode=require").await;
    let vars = |conn: &str| {
        crate::secrets::env(&[
            ("DB_CONNECTION_STRING", conn.to_owned()),
            ("LOCAL_DATA_KEY", KEY_B64.into()),
        ])
    };
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &vars(&conn));
    // The server knows nothing of IAM: the token is refused as a password,
    // after the TLS handshake.
    let Outcome::Response(r) = api
        .invoke(
            &Batch::default()
                .event("m1", &audit_event("iam"))
                .sqs_event(),
        )
        .await
    else {
        panic!("function error")
    };
    assert_eq!(r["batchItemFailures"][0]["itemIdentifier"], "m1");
    let logs = function.output();
    assert!(logs.contains("using RDS IAM authentication"), "{logs}");
    assert!(logs.contains("password authentication failed"), "{logs}");

    let message = init_error(&vars(&conn.replace(" sslmode=require", ""))).await;
    assert!(
        message.starts_with("DB_CONNECTION_STRING: an RDS IAM token"),
        "{message}"
    );
}

#[tokio::test]
async fn a_handshake_cut_by_a_reset_is_an_outage_not_an_init_error() {
    // Says yes to TLS, then resets the connection on the ClientHello, as a
    // failing-over server or a restarting proxy does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).await.is_err() {
                continue;
            }
            let _ = socket.write_all(b"S").await;
            let _ = socket.read(&mut [0u8; 512]).await;
            // A zero linger resets at once (the warning is about non-zero ones).
            #[allow(deprecated)]
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
    });
    let conn = format!("host=127.0.0.1 port={port} user=u password=p dbname=d sslmode=require");
    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(
        &api,
        &[
            ("DB_CONNECTION_STRING", conn),
            ("LOCAL_DATA_KEY", KEY_B64.into()),
        ],
    );
    let Outcome::Response(r) = api
        .invoke(&Batch::default().event("m1", &audit_event("a1")).sqs_event())
        .await
    else {
        panic!("function error: {}", function.output())
    };
    assert_eq!(r["batchItemFailures"][0]["itemIdentifier"], "m1");
    assert!(api.init_error().is_none(), "{}", function.output());
    assert!(function.is_running(), "{}", function.output());
    let logs = function.output();
    assert!(logs.contains("cannot reach the database"), "{logs}");
}

/// `SSL_CERT_FILE` for the child: OpenSSL's default CA file, the "system store".
fn with_system_store(
    mut vars: Vec<(&'static str, String)>,
    file: &Path,
) -> Vec<(&'static str, String)> {
    vars.push(("SSL_CERT_FILE", file.display().to_string()));
    vars
}

#[tokio::test]
async fn sslrootcert_file_trusts_that_file_alone() {
    let (pki, server) = tls_server().await;
    // The server's CA is in the system store; the file names another.
    let tls = format!("sslmode=verify-full sslrootcert={}", pki.other_ca.display());
    let vars = with_system_store(connection(&server, "localhost", &tls), &pki.ca);
    let message = init_error(&vars).await;
    assert_tls_failure(&message);
    assert!(message.contains("certificate verify failed"), "{message}");
}

#[tokio::test]
async fn sslrootcert_system_reads_the_default_store() {
    let (pki, server) = tls_server().await;
    // Channel binding required: SCRAM-SHA-256-PLUS over the verified session.
    let tls = "sslmode=verify-full sslrootcert=system channel_binding=require";
    let vars = with_system_store(connection(&server, "localhost", tls), &pki.ca);
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &vars);
    assert_all_stored(&api, &function, "system-store").await;

    // A store without the server's CA refuses it.
    let vars = with_system_store(connection(&server, "localhost", tls), &pki.other_ca);
    let message = init_error(&vars).await;
    assert_tls_failure(&message);
    assert!(message.contains("certificate verify failed"), "{message}");
}

#[tokio::test]
async fn a_system_store_that_cannot_be_read_is_named() {
    let (_pki, server) = tls_server().await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca-bundle.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let tls = format!("sslmode={mode} sslrootcert=system");
        let vars = with_system_store(connection(&server, "localhost", &tls), &garbage);
        let message = init_error(&vars).await;
        assert!(
            message.starts_with(&format!(
                "DB_CONNECTION_STRING: sslrootcert=system: the system CA bundle {} cannot be loaded",
                garbage.display()
            )),
            "{mode}: {message}"
        );
    }
}

/// A FIFO without a writer: opening it for reading blocks, so a process
/// that reads it never gets past that point.
fn unreadable_file(dir: &Path) -> PathBuf {
    let path = dir.join("ca-bundle.crt");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    path
}

#[tokio::test]
async fn modes_that_verify_nothing_read_no_ca_file() {
    let (_pki, server) = tls_server().await;
    let dir = tempfile::tempdir().unwrap();
    let store = unreadable_file(dir.path());
    // `prefer` verifies nothing, so its sslrootcert is not read either.
    let prefer_with_file = format!("sslmode=prefer sslrootcert={}", store.display());
    for (i, tls) in ["sslmode=prefer", "sslmode=require", &prefer_with_file]
        .into_iter()
        .enumerate()
    {
        let vars = with_system_store(connection(&server, "localhost", tls), &store);
        let api = RuntimeApi::start().await;
        let function = Function::spawn(&api, &vars);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while api.first_next().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{tls}: no start within 20 s (is a CA file being read?): {}",
                function.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_all_stored(&api, &function, &format!("no-ca-{i}")).await;
    }
}
