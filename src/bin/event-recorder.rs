//! event-recorder: the operator's and developer's command-line tool.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use aws_lambda_events::event::sqs::SqsEvent;
use clap::{Parser, Subcommand};
use event_recorder::config::{Config, DatabaseConfig};
use event_recorder::functions::sqs::App;
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
    let outcome = match Cli::parse().command {
        Command::Migrate => migrate().await,
        Command::Encrypt {
            key,
            sqs_event,
            file,
        } => encrypt(&key, sqs_event, file),
        Command::Invoke { file } => invoke(&file).await,
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
    let app = App::start(Config::from_env()?).await?;
    let response = app.handle(event).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}
