//! The Lambda entry point (custom runtime): configuration from the
//! environment once, then SQS batches from the Lambda Runtime API.

use aws_lambda_events::event::sqs::SqsEvent;
use event_recorder::app::App;
use event_recorder::config::Config;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = match Config::from_env() {
        Ok(config) => App::start(config).await,
        Err(e) => Err(e.into()),
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            event_recorder::runtime_api::report_init_error(&e.to_string()).await;
            std::process::exit(1);
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        app.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
