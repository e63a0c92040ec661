//! event-recorder: the operator's and developer's command-line tool.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aws_lambda_events::event::sqs::SqsEvent;
use clap::{Parser, Subcommand};
use event_recorder::Store;
use event_recorder::config::{Config, DatabaseConfig};
use event_recorder::functions::sqs;
use event_recorder::functions::{fraud_csv, s3_import};
use event_recorder::start::{self, Aws};
use event_recorder::{DataKey, schema};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    version,
    about = "Stores encrypted audit events from SQS in PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database schema (migrations) to DB_CONNECTION_STRING.
    Migrate,
    /// Encrypt event JSON into SQS message bodies, one per line.
    Encrypt {
        /// Base64 of the raw AES data key.
        #[arg(long, env = "LOCAL_DATA_KEY", hide_env_values = true)]
        key: String,
        /// Print one SQS event (as Lambda receives it) instead of bare bodies.
        #[arg(long)]
        sqs_event: bool,
        /// Events as a JSON array or as JSON lines; `-` or nothing reads stdin.
        file: Option<PathBuf>,
    },
    /// Run an SQS event JSON file through the Lambda handler, without the
    /// Runtime API, and print the batch response. Configured by the same
    /// environment variables as the Lambda.
    Invoke {
        /// The SQS event JSON.
        file: PathBuf,
    },
    /// Import a JSON-lines file of events (`{"document": <event>}` per line)
    /// as the s3-import function does. Rejected lines go to FILE.rejects.jsonl.
    Import { file: PathBuf },
    /// Upload an IdP fraud-report CSV file as the idp-fraud-upload function
    /// does, with the options its S3 tags would carry. The file is not moved.
    IdpFraudUpload {
        file: PathBuf,
        /// The IdP's entity id (tag `idp`).
        #[arg(long)]
        idp: String,
        /// Who uploaded it (tag `username`).
        #[arg(long)]
        username: String,
        /// IANA time zone of times without an offset (tag `timezone`).
        #[arg(long, default_value = "Europe/London")]
        timezone: String,
        /// excel, excel-tab or unix (tag `dialect`).
        #[arg(long, default_value = "excel")]
        dialect: String,
        /// Order of day and month in slash dates: dmy (05/08/2019 is
        /// 5 August) or mdy (tag `date-order`).
        #[arg(long, default_value = "dmy")]
        date_order: String,
        /// The first row is data, not a header.
        #[arg(long)]
        no_header: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // stdout carries the command's output.
    event_recorder::logging::init(true);
    let outcome = match Cli::parse().command {
        Command::Migrate => migrate().await,
        Command::Encrypt {
            key,
            sqs_event,
            file,
        } => encrypt(&key, sqs_event, file),
        Command::Invoke { file } => invoke(&file).await,
        Command::Import { file } => import(&file).await,
        Command::IdpFraudUpload {
            file,
            idp,
            username,
            timezone,
            dialect,
            date_order,
            no_header,
        } => {
            let header = if no_header { "false" } else { "true" };
            let tags = [
                ("idp", idp.as_str()),
                ("username", username.as_str()),
                ("timezone", timezone.as_str()),
                ("dialect", dialect.as_str()),
                ("date-order", date_order.as_str()),
                ("has_header", header),
            ];
            fraud_upload(&file, tags).await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A connection as the functions make it, from the same variables.
async fn store() -> Result<Store> {
    let database = start::open_database(DatabaseConfig::from_env()?, &Aws::default()).await?;
    Ok(database.store().await?)
}

async fn import(file: &Path) -> Result {
    let mut store = store().await?;
    let reader = tokio::io::BufReader::new(tokio::fs::File::open(file).await?);
    let mut rejects = s3_import::Rejects::new()?;
    let report = s3_import::import(&mut store, reader, &mut rejects).await?;
    if rejects.count() > 0 {
        let mut target = file.as_os_str().to_owned();
        target.push(".rejects.jsonl");
        std::fs::copy(rejects.path()?, &target)?;
        eprintln!("rejected lines: {}", PathBuf::from(target).display());
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn fraud_upload(file: &Path, tags: [(&str, &str); 6]) -> Result {
    let tags = fraud_csv::tags::UploadTags::from_tags(tags)?;
    let bytes = std::fs::read(file)?;
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let mut store = store().await?;
    let report = fraud_csv::store_file(&mut store, &name, &bytes, &tags).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.passed {
        return Err(format!(
            "{} of the file's rows failed validation (see idp_data.upload_session_validation_failures, session {}); nothing was stored",
            report.failed_rows, report.session_id
        )
        .into());
    }
    Ok(())
}

async fn migrate() -> Result {
    let database = start::open_database(DatabaseConfig::from_env()?, &Aws::default()).await?;
    let mut client = database.client().await?;
    match schema::migrate(&mut client).await? {
        schema::Outcome::UpToDate => println!("schema up to date"),
        schema::Outcome::Applied(names) => names.iter().for_each(|n| println!("applied {n}")),
        schema::Outcome::Adopted { flyway } => println!(
            "existing schema verified and adopted as version 1{}; nothing changed",
            if flyway {
                " (built by the original's Flyway migrations)"
            } else {
                ""
            }
        ),
    }
    Ok(())
}

fn encrypt(key: &str, sqs_event: bool, file: Option<PathBuf>) -> Result {
    let key = DataKey::from_base64(key)?;
    let text = match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => std::fs::read_to_string(path)?,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    let events: Vec<Value> = match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect::<std::result::Result<_, _>>()?,
    };
    let bodies = events.iter().map(|e| key.encrypt(e.to_string().as_bytes()));
    if sqs_event {
        let records: Vec<Value> = bodies
            .enumerate()
            .map(|(i, body)| {
                json!({
                    "messageId": format!("message-{}", i + 1),
                    "body": body,
                    "eventSource": "aws:sqs",
                    "attributes": {},
                    "messageAttributes": {},
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "Records": records }))?
        );
    } else {
        bodies.for_each(|b| println!("{b}"));
    }
    Ok(())
}

async fn invoke(file: &PathBuf) -> Result {
    let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let mut config = Config::from_env()?;
    // stdout carries the batch response, and the batch summary goes to
    // stderr with the other lines; metrics are for CloudWatch.
    config.metrics_namespace = Some("none".into());
    let app = sqs::Function::start(config).await?;
    // As long as Lambda's longest timeout.
    let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(900);
    let response = app.handle(event, deadline).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}
