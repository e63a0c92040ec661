//! A Lambda Runtime API emulator on 127.0.0.1 (OS-assigned port): serves
//! `invocation/next` with the real headers and takes `/response`, `/error`
//! and `/init/error`, so the real `bootstrap` can be driven as Lambda would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";
const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-2:123456789012:function:event-recorder";

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

impl Outcome {
    /// The response body; panics on a function error.
    pub fn body(self) -> Value {
        match self {
            Outcome::Response(body) => body,
            Outcome::Error(e) => panic!("function error: {e}"),
        }
    }

    /// The message IDs of an SQS partial batch response; panics on a
    /// function error or another body.
    pub fn failures(self) -> Vec<String> {
        let body = self.body();
        body["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("not a batch response: {body}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect()
    }
}

struct Invocation {
    request_id: String,
    payload: String,
    /// The function's timeout: the deadline Lambda would send.
    timeout: Duration,
}

#[derive(Default)]
struct Recorded {
    init_error: Option<(Option<String>, Value)>,
    first_next: Option<Instant>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    recorded: Arc<Mutex<Recorded>>,
    next_id: Mutex<u32>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (queue, pending) = mpsc::unbounded_channel();
        let pending = Arc::new(tokio::sync::Mutex::new(pending));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let shared = (pending, recorded.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| route(req, shared.0.clone(), shared.1.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            queue,
            recorded,
            next_id: Mutex::new(0),
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues one invocation and waits (up to 60 s) for the function's answer.
    pub async fn invoke(&self, payload: &Value) -> Outcome {
        self.invoke_within(payload, Duration::from_secs(60)).await
    }

    /// The same, telling the function its deadline is `timeout` from now.
    pub async fn invoke_within(&self, payload: &Value, timeout: Duration) -> Outcome {
        let request_id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            format!("00000000-0000-4000-8000-{:012}", *n)
        };
        let (tx, rx) = oneshot::channel();
        self.recorded
            .lock()
            .unwrap()
            .waiting
            .insert(request_id.clone(), tx);
        self.queue
            .send(Invocation {
                request_id,
                payload: payload.to_string(),
                timeout,
            })
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the function answered no invocation within 60 s")
            .expect("emulator dropped the invocation")
    }

    /// The error type header and body posted to `/init/error`, if any.
    pub fn init_error(&self) -> Option<(Option<String>, Value)> {
        self.recorded.lock().unwrap().init_error.clone()
    }

    /// When the function first asked for an invocation.
    pub fn first_next(&self) -> Option<Instant> {
        self.recorded.lock().unwrap().first_next
    }
}

type Pending = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>;

async fn route(
    req: Request<Incoming>,
    pending: Pending,
    recorded: Arc<Mutex<Recorded>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .to_owned();
    let method = req.method().clone();
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let accepted = || reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#.into());

    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => {
            recorded
                .lock()
                .unwrap()
                .first_next
                .get_or_insert_with(Instant::now);
            let Some(inv) = pending.lock().await.recv().await else {
                return Ok(reply(StatusCode::GONE, "{}".into()));
            };
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + inv.timeout;
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("lambda-runtime-aws-request-id", &inv.request_id)
                .header(
                    "lambda-runtime-deadline-ms",
                    deadline.as_millis().to_string(),
                )
                .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN)
                .header(
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                )
                .body(Full::new(Bytes::from(inv.payload)))
                .unwrap()
        }
        (Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let Some(tx) = recorded.lock().unwrap().waiting.remove(*id) else {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"errorType":"InvalidRequestID"}"#.into(),
                ));
            };
            let _ = tx.send(match *kind {
                "response" => Outcome::Response(json()),
                _ => Outcome::Error(json()),
            });
            accepted()
        }
        (Method::POST, ["init", "error"]) => {
            recorded.lock().unwrap().init_error = Some((error_type, json()));
            accepted()
        }
        _ => reply(StatusCode::NOT_FOUND, "{}".into()),
    })
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
