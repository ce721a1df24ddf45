//! `relup-http-plain [ADDR]`: the http example as a plain axum app, without relup (the
//! baseline of BENCHMARKS.md). It answers with the very code of release 0.1.0's
//! `todo_server` (`Todos::handle`), on a state behind a mutex, so the difference with
//! `relup-http serve` is what relup costs per request: the blocking-pool hop, the
//! MessagePack encoding both ways and the node call. ADDR defaults to 127.0.0.1:8081.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use relup_example_http_api::{HttpRequest, HttpResponse};
use relup_example_http_v010::Todos;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

type Shared = Arc<Mutex<Todos>>;

async fn handle(State(todos): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let response = match String::from_utf8(body.to_vec()) {
        Ok(body) => {
            let request = HttpRequest {
                method: method.as_str().to_string(),
                path: uri.path().to_string(),
                body,
            };
            todos
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .handle(&request)
        }
        Err(_) => HttpResponse::error(400, "the body is not UTF-8"),
    };
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        response.body,
    )
        .into_response()
}

fn run(listen: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        println!("plain axum (no relup) listening on {addr}");
        let app = Router::new().fallback(handle).with_state(Shared::default());
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("serve: {e}"))
    })
}

fn main() -> ExitCode {
    let listen = std::env::args().nth(1);
    match run(listen.as_deref().unwrap_or("127.0.0.1:8081")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relup-http-plain: {e}");
            ExitCode::FAILURE
        }
    }
}
