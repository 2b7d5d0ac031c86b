//! Kubernetes `Status` objects: every error the API returns, and the JSON response helpers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An API error, answered as a `Status` with its HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Invalid`, `BadRequest`, ...
    pub reason: String,
    /// The message kubectl prints.
    pub message: String,
    /// `details` (name, kind, causes).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    /// 404 for one object: `pods "x" not found`.
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "kind": kind})),
            ..Self::new(404, "NotFound", format!("{kind} \"{name}\" not found"))
        }
    }

    /// 409 for an existing object.
    pub fn already_exists(kind: &str, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "kind": kind})),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{kind} \"{name}\" already exists"),
            )
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 422 from a validation failure, with its causes.
    pub fn invalid(inv: &peapod_api::validate::Invalid) -> Self {
        let causes: Vec<Value> = inv
            .causes
            .iter()
            .map(|c| json!({"reason": c.kind.reason(), "message": c.message(), "field": c.field}))
            .collect();
        Self {
            details: Some(json!({"name": inv.name, "kind": inv.kind, "causes": causes})),
            ..Self::new(422, "Invalid", inv.to_string())
        }
    }

    /// An engine error: "not found" wording becomes 404, user errors 400, the rest 500.
    pub fn from_engine(e: &anyhow::Error) -> Self {
        let msg = format!("{e:#}");
        if let Some(inv) = e.downcast_ref::<peapod_api::validate::Invalid>() {
            return Self::invalid(inv);
        }
        if msg.ends_with("not found") && msg.starts_with("pods \"") {
            let name = msg.split('"').nth(1).unwrap_or_default();
            return Self::not_found("pods", name);
        }
        if msg.ends_with("already exists") && msg.starts_with("pods \"") {
            let name = msg.split('"').nth(1).unwrap_or_default();
            return Self::already_exists("pods", name);
        }
        if e.downcast_ref::<crate::engine::UserError>().is_some() {
            return Self::bad_request(msg);
        }
        Self::internal(msg)
    }

    /// The `Status` body.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::from_engine(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.body())
    }
}

/// A JSON response.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

/// 200 with JSON.
pub fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}
