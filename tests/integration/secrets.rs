//! Production secrets against emulated AWS (moto on 127.0.0.1): the data key
//! from KMS (env or S3, and over HTTPS checked against the system store), the
//! password from KMS, RDS IAM tokens.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::support::TestDb;
use crate::support::certs;
use crate::support::events::{Batch, audit_event, billing_event};
use crate::support::function::{Function, init_error};
use crate::support::moto;
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::tls_proxy;

pub use crate::support::s3::sdk;

pub async fn kms_key(sdk: &SdkConfig) -> String {
    let key = aws_sdk_kms::Client::new(sdk)
        .create_key()
        .send()
        .await
        .unwrap();
    key.key_metadata.unwrap().key_id
}

pub async fn kms_encrypt(sdk: &SdkConfig, key_id: &str, plaintext: &[u8]) -> String {
    let out = aws_sdk_kms::Client::new(sdk)
        .encrypt()
        .key_id(key_id)
        .plaintext(aws_smithy_types::Blob::new(plaintext))
        .send()
        .await
        .unwrap();
    BASE64.encode(out.ciphertext_blob.unwrap().into_inner())
}

/// The data key the test events are encrypted with, as KMS ciphertext.
pub async fn wrapped_data_key(sdk: &SdkConfig) -> String {
    let key = kms_key(sdk).await;
    let raw = BASE64.decode(crate::support::events::KEY_B64).unwrap();
    kms_encrypt(sdk, &key, &raw).await
}

type Vars = Vec<(&'static str, String)>;

pub fn env(pairs: &[(&'static str, String)]) -> Vars {
    let mut all = moto::aws_env();
    all.extend_from_slice(pairs);
    all
}

async fn stores_a_batch(db: &TestDb, vars: &[(&'static str, String)]) -> Function {
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, vars);
    let batch = Batch::default()
        .event("m1", &audit_event("a1"))
        .event("m2", &billing_event("b1"));
    match api.invoke(&batch.sqs_event()).await {
        Outcome::Response(r) => assert_eq!(
            r["batchItemFailures"],
            serde_json::json!([]),
            "{}",
            function.output()
        ),
        Outcome::Error(e) => panic!("{e}: {}", function.output()),
    }
    assert_eq!(db.count("audit.audit_events").await, 2);
    assert_eq!(db.count("billing.billing_events").await, 1);
    function
}

#[tokio::test]
async fn data_key_from_kms_ciphertext_in_the_environment() {
    let db = TestDb::new().await;
    let sdk = sdk().await;
    let vars = env(&[
        ("DB_CONNECTION_STRING", db.connection_string()),
        ("ENCRYPTION_KEY", wrapped_data_key(&sdk).await),
    ]);
    let function = stores_a_batch(&db, &vars).await;
    assert!(
        function.output().contains("data key decrypted with KMS"),
        "{}",
        function.output()
    );
}

/// KMS and the AWS SDK at work, with the log at DEBUG (and TRACE): neither
/// the data key nor the password appears in it, in either format.
#[tokio::test]
async fn no_secret_in_the_logs_at_debug_with_kms() {
    let db = TestDb::new().await;
    let sdk = sdk().await;
    let (role, password) = db.role_with_password().await;
    let wrapped = wrapped_data_key(&sdk).await;
    let key_hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    for (level, format) in [("DEBUG", "JSON"), ("TRACE", "Text")] {
        let vars = env(&[
            (
                "DB_CONNECTION_STRING",
                format!("{role} password={password}"),
            ),
            ("ENCRYPTION_KEY", wrapped.clone()),
            ("AWS_LAMBDA_LOG_LEVEL", level.into()),
            ("AWS_LAMBDA_LOG_FORMAT", format.into()),
        ]);
        let api = RuntimeApi::start().await;
        let function = Function::spawn(&api, &vars);
        let batch =
            Batch::default().event(&format!("m-{level}"), &audit_event(&format!("kms-{level}")));
        match api.invoke(&batch.sqs_event()).await {
            Outcome::Response(r) => assert_eq!(r["batchItemFailures"], serde_json::json!([])),
            Outcome::Error(e) => panic!("{e}: {}", function.output()),
        }
        let logs = function.output();
        assert!(
            logs.contains("data key decrypted with KMS") && logs.contains(&format!("kms-{level}")),
            "{level}: the logs were captured: {logs}"
        );
        for secret in [
            crate::support::events::KEY_B64,
            key_hex.as_str(),
            password.as_str(),
        ] {
            assert!(
                !logs.contains(secret),
                "{level}: {secret:?} leaked into the logs:\n{logs}"
            );
        }
    }
}

#[tokio::test]
async fn data_key_from_kms_ciphertext_in_s3() {
    let db = TestDb::new().await;
    let sdk = sdk().await;
    let bucket = crate::support::server::unique_name("keys").replace('_', "-");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ciphertext = format!("{}\n", wrapped_data_key(&sdk).await);
    s3.put_object()
        .bucket(&bucket)
        .key("keys/data-key")
        .body(ciphertext.into_bytes().into())
        .send()
        .await
        .unwrap();
    let vars = env(&[
        ("DB_CONNECTION_STRING", db.connection_string()),
        ("DECRYPTION_KEY_BUCKET_NAME", bucket),
        ("DECRYPTION_KEY_FILE_NAME", "keys/data-key".into()),
    ]);
    stores_a_batch(&db, &vars).await;
}

#[tokio::test]
async fn start_up_failures_name_their_source() {
    let db = TestDb::new().await;
    let sdk = sdk().await;
    let key = kms_key(&sdk).await;
    // TLS required: the password case would stop on sslmode first otherwise.
    let conn = db.connection_string() + " sslmode=require";
    // (the init error's start, what the case is, its variables)
    let cases: Vec<(&str, &str, Vars)> = vec![
        (
            "ENCRYPTION_KEY: not valid base64",
            "malformed",
            vec![("ENCRYPTION_KEY", "%%%".into())],
        ),
        (
            "ENCRYPTION_KEY: KMS Decrypt failed",
            "not a ciphertext",
            vec![("ENCRYPTION_KEY", BASE64.encode([1u8; 64]))],
        ),
        (
            "ENCRYPTION_KEY: the data key is 20 bytes long",
            "wrong length",
            vec![("ENCRYPTION_KEY", kms_encrypt(&sdk, &key, &[3; 20]).await)],
        ),
        (
            "DECRYPTION_KEY_FILE_NAME: S3 GetObject",
            "no such object",
            vec![
                ("DECRYPTION_KEY_BUCKET_NAME", "no-such-bucket".into()),
                ("DECRYPTION_KEY_FILE_NAME", "missing".into()),
            ],
        ),
        (
            "ENCRYPTED_DATABASE_PASSWORD: KMS Decrypt failed",
            "password not a ciphertext",
            vec![
                ("ENCRYPTION_KEY", kms_encrypt(&sdk, &key, &[3; 32]).await),
                ("ENCRYPTED_DATABASE_PASSWORD", BASE64.encode([2u8; 40])),
            ],
        ),
    ];
    for (expected, case, vars) in cases {
        let mut all = env(&[("DB_CONNECTION_STRING", conn.clone())]);
        all.extend(vars);
        let message = init_error(&all).await;
        assert!(message.starts_with(expected), "{case}: {message}");
    }
}

#[test]
fn iam_token_matches_botocore() {
    let python = moto::shared()
        .venv_python
        .clone()
        .unwrap_or_else(|| "python3".into());
    let at = UNIX_EPOCH + Duration::from_secs(1_795_867_200); // 2026-11-28T12:00:00Z
    let (host, port, user) = (
        "db.abc123.eu-west-2.rds.amazonaws.com",
        6432,
        "event_writer",
    );
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "t",
    );
    let ours =
        event_recorder::aws::rds_token::generate(&credentials, "eu-west-2", host, port, user, at)
            .unwrap();

    // botocore's generate_db_auth_token, with its clock fixed at the same instant.
    let script = r#"
import datetime, sys, botocore.auth, botocore.session
botocore.auth.get_current_datetime = lambda *args, **kwargs: datetime.datetime(2026, 11, 28, 12, 0, 0)
session = botocore.session.get_session()
session.set_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
rds = session.create_client("rds", region_name="eu-west-2")
print(rds.generate_db_auth_token(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, host, &port.to_string(), user])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let split = |token: &str| {
        let (base, query) = token.split_once('?').unwrap();
        let mut params: Vec<String> = query.split('&').map(str::to_owned).collect();
        params.sort();
        (base.to_owned(), params)
    };
    assert_eq!(
        split(&ours),
        split(&theirs),
        "\nours:   {ours}\ntheirs: {theirs}"
    );
    assert!(ours.contains("X-Amz-Signature="));
    let _ = SystemTime::now();
}

#[tokio::test]
async fn kms_over_https_is_checked_against_the_system_store() {
    let db = TestDb::new().await;
    let sdk = sdk().await;
    let pki = certs::make(&["localhost"]);
    let moto_port = tls_proxy::port_of(&moto::shared().endpoint);
    let proxy = tls_proxy::start(moto_port, &pki.server_cert, &pki.server_key).await;
    let wrapped = wrapped_data_key(&sdk).await;
    let vars = |store: &Path| {
        let mut vars = env(&[
            ("DB_CONNECTION_STRING", db.connection_string()),
            ("ENCRYPTION_KEY", wrapped.clone()),
            ("SSL_CERT_FILE", store.display().to_string()),
        ]);
        for (name, value) in &mut vars {
            if *name == "AWS_ENDPOINT_URL" {
                *value = format!("https://localhost:{proxy}");
            }
        }
        vars
    };
    stores_a_batch(&db, &vars(&pki.ca)).await;

    // A store without the CA that signed the endpoint's certificate.
    let message = init_error(&vars(&pki.other_ca)).await;
    assert!(
        message.starts_with("ENCRYPTION_KEY: KMS Decrypt failed"),
        "{message}"
    );
    assert!(message.contains("certificate verify failed"), "{message}");
}
