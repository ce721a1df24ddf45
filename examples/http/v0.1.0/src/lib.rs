//! The http example, release 0.1.0: module `todo_server`, a todo list behind the host's HTTP
//! server. The host hands every request over as an [`HttpRequest`] (a node call); this module
//! routes it and keeps the state:
//!
//! - `POST /todos` with `{"title": "..."}`: 201 `{"id": 1, "title": "..."}`
//! - `GET /todos/{id}`: 200 `{"id": 1, "title": "..."}`, 404 when there is none
//! - `GET /version`: 200 `{"version": "0.1.0", "todos": 3}`
//!
//! Anything else answers 404 (0.2.0's `/stats` and `POST /todos/{id}/done` among them).

use relup_example_http_api::{HttpRequest, HttpResponse, SERVER_NAME};
use relup_module::{Context, Direction, OldState, Server};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The module version (= the crate and release version).
pub const VERSION: &str = "0.1.0";

/// The longest title accepted, in bytes.
pub const MAX_TITLE: usize = 1024;

/// The state: titles by id.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct Todos {
    /// The id the next todo gets.
    next_id: u64,
    /// Every todo's title, by id.
    titles: BTreeMap<u64, String>,
}

/// 0.2.0's state, as 0.1.0 reads it on a downgrade.
#[derive(Deserialize)]
struct TodosV020 {
    next_id: u64,
    items: BTreeMap<u64, TodoV020>,
}

#[derive(Deserialize)]
struct TodoV020 {
    title: String,
}

/// The body of `POST /todos`.
#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

impl Todos {
    /// Answers one request (the whole of the module's HTTP API).
    pub fn handle(&mut self, request: &HttpRequest) -> HttpResponse {
        match (request.method.as_str(), request.segments().as_slice()) {
            ("POST", ["todos"]) => self.create(&request.body),
            ("GET", ["todos", id]) => match id
                .parse::<u64>()
                .ok()
                .and_then(|id| self.titles.get(&id).map(|title| (id, title)))
            {
                Some((id, title)) => HttpResponse::json(200, &json!({ "id": id, "title": title })),
                None => HttpResponse::error(404, &format!("no todo {id}")),
            },
            ("GET", ["version"]) => HttpResponse::json(
                200,
                &json!({ "version": VERSION, "todos": self.titles.len() }),
            ),
            (method, _) => HttpResponse::error(404, &format!("no route {method} {}", request.path)),
        }
    }

    fn create(&mut self, body: &str) -> HttpResponse {
        let new: NewTodo = match serde_json::from_str(body) {
            Ok(new) => new,
            Err(e) => return HttpResponse::error(400, &format!("bad todo: {e}")),
        };
        if new.title.len() > MAX_TITLE {
            return HttpResponse::error(400, &format!("title longer than {MAX_TITLE} bytes"));
        }
        self.next_id += 1;
        let id = self.next_id;
        let reply = HttpResponse::json(201, &json!({ "id": id, "title": new.title }));
        self.titles.insert(id, new.title);
        reply
    }
}

impl Server for Todos {
    type Args = ();
    type Call = HttpRequest;
    type Reply = HttpResponse;
    type Cast = ();
    type Info = ();

    fn init(_args: (), ctx: &mut Context<'_>) -> Result<Self, String> {
        if !ctx.register(SERVER_NAME) {
            return Err(format!("the name {SERVER_NAME} is taken"));
        }
        Ok(Todos::default())
    }

    fn handle_call(&mut self, request: HttpRequest, _ctx: &mut Context<'_>) -> HttpResponse {
        self.handle(&request)
    }

    /// Down from 0.2.0: each todo keeps its id and title; its `done` mark is dropped (0.1.0
    /// has no place for it).
    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let bad = |e: relup_module::codec::CodecError| {
            format!(
                "todo_server {VERSION}: bad state from {}: {e}",
                old.from_vsn
            )
        };
        match (old.direction, old.from_vsn) {
            (Direction::Down, "0.2.0") => {
                let v020 = old.decode::<TodosV020>().map_err(bad)?;
                Ok(Todos {
                    next_id: v020.next_id,
                    titles: v020
                        .items
                        .into_iter()
                        .map(|(id, todo)| (id, todo.title))
                        .collect(),
                })
            }
            (_, VERSION) => old.decode::<Todos>().map_err(bad),
            (direction, other) => Err(format!(
                "todo_server {VERSION} cannot take the state of {other} ({direction:?})"
            )),
        }
    }
}

relup_module::export_module!(Todos, "todo_server", VERSION);

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::codec;

    fn post(todos: &mut Todos, title: &str) -> HttpResponse {
        todos.handle(&HttpRequest {
            method: "POST".into(),
            path: "/todos".into(),
            body: json!({ "title": title }).to_string(),
        })
    }

    #[test]
    fn create_read_and_errors() {
        assert_eq!(VERSION, env!("CARGO_PKG_VERSION"));
        let mut todos = Todos::default();
        let created = post(&mut todos, "milk");
        assert_eq!(created.status, 201);
        assert_eq!(created.body, r#"{"id":1,"title":"milk"}"#);
        let got = todos.handle(&HttpRequest::new("GET", "/todos/1"));
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, r#"{"id":1,"title":"milk"}"#)
        );
        assert_eq!(
            todos.handle(&HttpRequest::new("GET", "/todos/2")).status,
            404
        );
        assert_eq!(
            todos.handle(&HttpRequest::new("GET", "/todos/x")).status,
            404
        );
        assert_eq!(todos.handle(&HttpRequest::new("GET", "/stats")).status, 404);
        let mut bad = HttpRequest::new("POST", "/todos");
        bad.body = "{".into();
        assert_eq!(todos.handle(&bad).status, 400);
        assert_eq!(post(&mut todos, &"x".repeat(MAX_TITLE + 1)).status, 400);
        let version = todos.handle(&HttpRequest::new("GET", "/version"));
        assert_eq!(version.body, r#"{"todos":1,"version":"0.1.0"}"#);
    }

    #[test]
    fn down_from_020_keeps_ids_and_titles() {
        #[derive(Serialize)]
        struct Todo {
            title: String,
            done: bool,
        }
        #[derive(Serialize)]
        struct V020 {
            next_id: u64,
            items: BTreeMap<u64, Todo>,
        }
        let bytes = codec::encode(&V020 {
            next_id: 9,
            items: [(
                4,
                Todo {
                    title: "a".into(),
                    done: true,
                },
            )]
            .into(),
        })
        .unwrap();
        let extra = codec::encode(&()).unwrap();
        let state = Todos::code_change(OldState {
            from_vsn: "0.2.0",
            direction: Direction::Down,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap();
        assert_eq!(state.next_id, 9);
        assert_eq!(state.titles, BTreeMap::from([(4, "a".to_string())]));
    }
}
