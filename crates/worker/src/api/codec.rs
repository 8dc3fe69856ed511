//! Temporal's codec-server protocol, so the Temporal UI (`--ui-codec-endpoint <api>/codec`) and
//! `temporal workflow show --codec-endpoint <api>/codec` show `[temporal.codec]`'s payloads in
//! clear to whoever may read the API:
//!
//! `POST /codec/decode` and `POST /codec/encode` take and answer
//! `{"payloads": [{"metadata": {"<key>": "<base64>"}, "data": "<base64>"}]}`. Access is the
//! API's reads' (a token of either role; open on loopback). The UI calls from its own origin
//! (`[temporal] ui_url`), so that origin, and only it, gets CORS answers, with `X-Namespace` and
//! `Authorization` allowed (the UI's "include cross-origin credentials" sends the token).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use temporalio_common::protos::temporal::api::common::v1::Payload;

use super::{ApiError, ApiState};

/// One payload as the codec-server protocol writes it (protobuf JSON: bytes as base64).
#[derive(Debug, Default, Deserialize, Serialize)]
struct JsonPayload {
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    data: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Payloads {
    #[serde(default)]
    payloads: Vec<JsonPayload>,
}

fn bytes(what: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text)
        .map_err(|e| ApiError::bad_request(format!("payload {what} is not base64: {e}")))
}

fn from_json(p: JsonPayload) -> Result<Payload, ApiError> {
    let mut metadata = HashMap::new();
    for (key, value) in p.metadata {
        let value = bytes(&format!("metadata {key:?}"), &value)?;
        metadata.insert(key, value);
    }
    Ok(Payload {
        metadata,
        data: bytes("data", &p.data)?,
        ..Default::default()
    })
}

fn to_json(p: Payload) -> JsonPayload {
    JsonPayload {
        metadata: p.metadata.into_iter().map(|(k, v)| (k, STANDARD.encode(v))).collect(),
        data: STANDARD.encode(p.data),
    }
}

/// The origin of the Temporal UI (`[temporal] ui_url`), as browsers send it in `Origin`.
fn ui_origin(state: &ApiState) -> Option<String> {
    let url = url::Url::parse(&state.config().temporal.ui_url).ok()?;
    Some(url.origin().ascii_serialization())
}

/// CORS headers for a request from the Temporal UI's origin; none for any other origin (the
/// browser then keeps the answer from the page).
fn cors(state: &ApiState, request: &HeaderMap, response: &mut HeaderMap) {
    let origin = request.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let Some(allowed) = ui_origin(state) else {
        return;
    };
    if origin != Some(allowed.as_str()) {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&allowed) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    response.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    response.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, X-Namespace, Authorization"),
    );
    response.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// `OPTIONS /codec/{decode,encode}`: the browser's preflight, answered without a token (a
/// preflight never carries one).
pub(super) async fn preflight(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(&state, &headers, response.headers_mut());
    response
}

#[derive(Clone, Copy)]
enum Direction {
    Encode,
    Decode,
}

fn convert(state: &ApiState, headers: &HeaderMap, body: &Bytes, direction: Direction) -> Result<Response, ApiError> {
    state.authorize_read(headers)?;
    let codec = state.codec.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "codec_off",
            "this worker has no payload codec: payloads are stored in clear (see [temporal.codec] in the README)",
        )
    })?;
    let request: Payloads = super::body(body)?;
    let payloads = request
        .payloads
        .into_iter()
        .map(from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let converted = match direction {
        Direction::Encode => codec.encrypt_all(&payloads),
        Direction::Decode => codec.decrypt_all(payloads),
    }
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "codec_failed", e.to_string()))?;
    let answer = Payloads {
        payloads: converted.into_iter().map(to_json).collect(),
    };
    Ok(axum::Json(answer).into_response())
}

async fn answer(state: Arc<ApiState>, headers: HeaderMap, body: Bytes, direction: Direction) -> Response {
    let mut response = match convert(&state, &headers, &body, direction) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    cors(&state, &headers, response.headers_mut());
    response
}

/// `POST /codec/decode`: encrypted payloads in, the original payloads out.
pub(super) async fn decode(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(state, headers, body, Direction::Decode).await
}

/// `POST /codec/encode`: payloads in, encrypted with the key that encrypts now.
pub(super) async fn encode(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(state, headers, body, Direction::Encode).await
}
