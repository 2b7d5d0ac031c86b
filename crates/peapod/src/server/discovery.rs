//! The fixed documents: `/version`, legacy discovery (`/api`, `/apis`, `/api/v1`) and the
//! tiny OpenAPI v3 documents that tell kubectl the server validates fields itself.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::status::{ok, ApiError};

/// `GET /version`: a current minor, so the gcloud kubectl dispatcher picks a modern kubectl.
pub async fn version() -> Response {
    ok(&json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "peapod",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": format!("linux/{}", super::others::go_arch()),
    }))
}

/// `GET /api`.
pub async fn api(req: Request) -> Response {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:6443")
        .to_string();
    ok(&json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }))
}

/// `GET /apis`: no groups (it must answer 200).
pub async fn apis() -> Response {
    ok(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
}

/// `GET /api/v1`.
pub async fn api_v1() -> Response {
    let all = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    ok(&json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "shortNames": ["po"], "categories": ["all"], "verbs": all},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions",
             "verbs": ["create", "get"]},
            {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap",
             "shortNames": ["cm"], "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
            {"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret",
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
             "shortNames": ["ev"], "verbs": ["get", "list", "watch"]},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
             "shortNames": ["no"], "verbs": ["get", "list", "watch"]},
            {"name": "services", "singularName": "service", "namespaced": true, "kind": "Service",
             "shortNames": ["svc"], "verbs": ["get", "list"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
             "shortNames": ["ns"], "verbs": ["get", "list", "watch"]},
        ],
    }))
}

/// `GET /openapi/v3`.
pub async fn openapi_v3() -> Response {
    ok(&json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=peapod1"}}}))
}

/// `GET /openapi/v3/api/v1`: only what kubectl's validator asks (fieldValidation support).
pub async fn openapi_v3_api_v1() -> Response {
    ok(&json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": {
            "/api/v1/namespaces/{namespace}/pods/{name}": patch_path("Pod"),
            "/api/v1/namespaces/{namespace}/configmaps/{name}": patch_path("ConfigMap"),
            "/api/v1/namespaces/{namespace}/secrets/{name}": patch_path("Secret"),
        },
    }))
}

/// A PATCH operation of `kind` that takes `fieldValidation`.
fn patch_path(kind: &str) -> serde_json::Value {
    json!({"patch": {
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
        "x-kubernetes-action": "patch",
        "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
    }})
}

/// Anything else: 404 as the API server words it.
pub async fn not_found() -> Response {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .into_response()
}
