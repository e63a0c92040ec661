//! RDS IAM authentication tokens: a SigV4 presigned `connect` request for
//! one host, port and user, valid 15 minutes, used as the password.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

const SERVICE: &str = "rds-db";
const VALIDITY: Duration = Duration::from_secs(900);

pub fn generate(
    credentials: &Credentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
    time: SystemTime,
) -> Result<String, String> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(VALIDITY);
    settings.signature_location = SignatureLocation::QueryParams;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let url = format!(
        "https://{host}:{port}/?Action=connect&DBUser={}",
        encode(user)
    );
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut request = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request
        .uri()
        .to_string()
        .trim_start_matches("https://")
        .to_owned())
}

/// Query-string encoding of a user name (RFC 3986 unreserved characters kept).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
