//! The route table and query-string parsing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::get;
use axum::Router;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::{attach, discovery, exec, logs, objects, others, pods, AppState};

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api))
        .route("/apis", get(discovery::apis))
        .route("/api/v1", get(discovery::api_v1))
        .route("/openapi/v3", get(discovery::openapi_v3))
        .route("/openapi/v3/api/v1", get(discovery::openapi_v3_api_v1))
        .route("/api/v1/pods", get(pods::list_all))
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(pods::list).post(pods::create),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(pods::get_one)
                .delete(pods::delete)
                .patch(pods::patch)
                .put(pods::replace),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(logs::logs))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/exec",
            get(exec::exec).post(exec::exec_spdy),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/attach",
            get(attach::attach).post(attach::attach_spdy),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/portforward",
            get(exec::unsupported).post(exec::unsupported),
        )
        .route("/api/v1/events", get(others::events_all))
        .route("/api/v1/namespaces/{ns}/events", get(others::events))
        .route("/api/v1/nodes", get(others::nodes))
        .route("/api/v1/nodes/{name}", get(others::node))
        .route("/api/v1/namespaces", get(others::namespaces))
        .route("/api/v1/namespaces/{name}", get(others::namespace))
        .route("/api/v1/services", get(others::services))
        .route("/api/v1/namespaces/{ns}/services", get(others::services))
        .route("/api/v1/configmaps", get(objects::list_all::<ConfigMap>))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            get(objects::list::<ConfigMap>).post(objects::create::<ConfigMap>),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(objects::get_one::<ConfigMap>)
                .delete(objects::delete::<ConfigMap>)
                .patch(objects::patch::<ConfigMap>)
                .put(objects::replace::<ConfigMap>),
        )
        .route("/api/v1/secrets", get(objects::list_all::<Secret>))
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            get(objects::list::<Secret>).post(objects::create::<Secret>),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(objects::get_one::<Secret>)
                .delete(objects::delete::<Secret>)
                .patch(objects::patch::<Secret>)
                .put(objects::replace::<Secret>),
        )
        .route("/healthz", get(others::healthz))
        .route("/livez", get(others::healthz))
        .route("/readyz", get(others::healthz))
        .fallback(discovery::not_found)
        .with_state(state)
}

/// The query string as pairs (repeated keys kept, like `command=`).
#[derive(Debug, Default, Clone)]
pub struct Q(pub Vec<(String, String)>);

impl Q {
    /// Parses `a=b&c=d` with percent-decoding.
    pub fn parse(raw: &str) -> Self {
        Q(raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A number.
    pub fn num(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<S: Send + Sync> FromRequestParts<S> for Q {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Q::parse(parts.uri.query().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Q::parse(
            "command=sh&command=-c&command=exit%203&fieldSelector=metadata.name%3Dx&a=b+c",
        );
        assert_eq!(q.all("command"), vec!["sh", "-c", "exit 3"]);
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=x"));
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(Q::parse("x=%4").get("x"), Some("%4"));
    }
}
