//! The http example's protocol between the host and `todo_server`: the host turns each HTTP
//! request into an [`HttpRequest`], calls the process registered as [`SERVER_NAME`] with it,
//! and writes the [`HttpResponse`] it gets back. Routing, parsing and state all live in the
//! module, so an upgrade can change them (0.2.0 adds endpoints) while the host stays as it is.

use serde::{Deserialize, Serialize};

/// The name `todo_server` registers under; the host calls it by this name.
pub const SERVER_NAME: &str = "todos";

/// An HTTP request as the host hands it to the module.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query string (`/todos/7`).
    pub path: String,
    /// The body (UTF-8; the host answers 400 to any other).
    pub body: String,
}

/// The module's answer: a status and a JSON body.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body, JSON.
    pub body: String,
}

impl HttpResponse {
    /// A response with `value` as its JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> HttpResponse {
        HttpResponse {
            status,
            body: value.to_string(),
        }
    }

    /// An error response: `{"error": message}`.
    pub fn error(status: u16, message: &str) -> HttpResponse {
        HttpResponse::json(status, &serde_json::json!({ "error": message }))
    }
}

impl HttpRequest {
    /// A request with no body.
    pub fn new(method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            body: String::new(),
        }
    }

    /// The path's segments: `/todos/7/done` gives `["todos", "7", "done"]`.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_skip_empty_parts() {
        assert_eq!(
            HttpRequest::new("GET", "/todos//7/").segments(),
            ["todos", "7"]
        );
        assert!(HttpRequest::new("GET", "/").segments().is_empty());
    }

    #[test]
    fn error_is_json() {
        let r = HttpResponse::error(404, "no \"x\"");
        assert_eq!(r.status, 404);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"], "no \"x\"");
    }
}
