//! The Lambda entry point (custom runtime). `_HANDLER` (the function's
//! Handler setting) chooses the function; its start-up runs once, then the
//! Runtime API's events are lent to it one at a time.

use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsEvent;
use event_recorder::functions::{Handler, fraud_csv, s3_import, sqs};
use event_recorder::start::StartError;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    event_recorder::logging::init(false);
    let handler = match Handler::from_env() {
        Ok(handler) => handler,
        Err(e) => exit_with_init_error(e.into()).await,
    };
    match handler {
        Handler::Sqs => {
            let app = started(sqs::Function::from_env().await).await;
            lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
                let deadline = e.context.deadline();
                app.handle(e.payload, deadline).await.map_err(Error::from)
            }))
            .await
        }
        Handler::S3Import => {
            let app = started(s3_import::Function::from_env().await).await;
            lambda_runtime::run(service_fn(move |e: LambdaEvent<S3Event>| async move {
                let deadline = e.context.deadline();
                app.handle(e.payload, deadline).await.map_err(Error::from)
            }))
            .await
        }
        Handler::IdpFraudUpload => {
            let app = started(fraud_csv::Function::from_env().await).await;
            lambda_runtime::run(service_fn(move |e: LambdaEvent<S3Event>| async move {
                let deadline = e.context.deadline();
                app.handle(e.payload, deadline).await.map_err(Error::from)
            }))
            .await
        }
    }
}

/// The started function, kept for the life of the process.
async fn started<F: 'static>(start: Result<F, StartError>) -> &'static F {
    match start {
        Ok(function) => Box::leak(Box::new(function)),
        Err(e) => exit_with_init_error(e).await,
    }
}

async fn exit_with_init_error(e: StartError) -> ! {
    tracing::error!(error = %e, "start-up failed");
    event_recorder::runtime_api::report_init_error(&e.to_string()).await;
    std::process::exit(1)
}
