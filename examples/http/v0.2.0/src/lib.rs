//! The http example, release 0.2.0: module `todo_server` with todos that can be done. The
//! state is reshaped: 0.1.0's titles by id become [`Todo`] records (title and `done`), and a
//! count of done todos is kept. New endpoints:
//!
//! - `POST /todos/{id}/done`: 200 `{"id": 1, "title": "...", "done": true}`
//! - `GET /stats`: 200 `{"todos": 3, "done": 1, "open": 2}`
//!
//! and `GET /todos/{id}` shows `done`. `POST /todos` and `GET /version` are as in 0.1.0.
//! `code_change` up from 0.1.0 makes every todo open; 0.1.0's own `code_change` takes the
//! state back down (dropping the `done` marks).

use relup_example_http_api::{HttpRequest, HttpResponse, SERVER_NAME};
use relup_module::{Context, Direction, OldState, Server};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The module version (= the crate and release version).
pub const VERSION: &str = "0.2.0";

/// The longest title accepted, in bytes.
pub const MAX_TITLE: usize = 1024;

/// One todo.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Todo {
    /// What to do.
    title: String,
    /// Whether it is done.
    done: bool,
}

/// The state: todos by id, and how many are done.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct Todos {
    /// The id the next todo gets.
    next_id: u64,
    /// Every todo, by id.
    items: BTreeMap<u64, Todo>,
    /// How many of `items` are done.
    done: u64,
}

/// 0.1.0's state, as 0.2.0 reads it on an upgrade.
#[derive(Deserialize)]
struct TodosV010 {
    next_id: u64,
    titles: BTreeMap<u64, String>,
}

/// The body of `POST /todos`.
#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

fn todo_json(id: u64, todo: &Todo) -> serde_json::Value {
    json!({ "id": id, "title": todo.title, "done": todo.done })
}

impl Todos {
    /// Answers one request (the whole of the module's HTTP API).
    pub fn handle(&mut self, request: &HttpRequest) -> HttpResponse {
        match (request.method.as_str(), request.segments().as_slice()) {
            ("POST", ["todos"]) => self.create(&request.body),
            ("GET", ["todos", id]) => match self.find(id) {
                Some((id, todo)) => HttpResponse::json(200, &todo_json(id, todo)),
                None => HttpResponse::error(404, &format!("no todo {id}")),
            },
            ("POST", ["todos", id, "done"]) => {
                let Some(id) = id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| self.items.contains_key(id))
                else {
                    return HttpResponse::error(404, &format!("no todo {id}"));
                };
                let Some(todo) = self.items.get_mut(&id) else {
                    return HttpResponse::error(404, &format!("no todo {id}"));
                };
                if !todo.done {
                    todo.done = true;
                    self.done += 1;
                }
                HttpResponse::json(200, &todo_json(id, todo))
            }
            ("GET", ["stats"]) => {
                let total = self.items.len() as u64;
                HttpResponse::json(
                    200,
                    &json!({ "todos": total, "done": self.done, "open": total - self.done }),
                )
            }
            ("GET", ["version"]) => HttpResponse::json(
                200,
                &json!({ "version": VERSION, "todos": self.items.len() }),
            ),
            (method, _) => HttpResponse::error(404, &format!("no route {method} {}", request.path)),
        }
    }

    fn find(&self, id: &str) -> Option<(u64, &Todo)> {
        let id = id.parse::<u64>().ok()?;
        self.items.get(&id).map(|todo| (id, todo))
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
        let todo = Todo {
            title: new.title,
            done: false,
        };
        let reply = HttpResponse::json(201, &todo_json(id, &todo));
        self.items.insert(id, todo);
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

    /// Up from 0.1.0: every todo keeps its id and title and starts open.
    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let bad = |e: relup_module::codec::CodecError| {
            format!(
                "todo_server {VERSION}: bad state from {}: {e}",
                old.from_vsn
            )
        };
        match (old.direction, old.from_vsn) {
            (Direction::Up, "0.1.0") => {
                let v010 = old.decode::<TodosV010>().map_err(bad)?;
                Ok(Todos {
                    next_id: v010.next_id,
                    items: v010
                        .titles
                        .into_iter()
                        .map(|(id, title)| (id, Todo { title, done: false }))
                        .collect(),
                    done: 0,
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

    #[test]
    fn done_and_stats() {
        assert_eq!(VERSION, env!("CARGO_PKG_VERSION"));
        let mut todos = Todos::default();
        let mut post = HttpRequest::new("POST", "/todos");
        post.body = r#"{"title":"milk"}"#.into();
        assert_eq!(
            todos.handle(&post).body,
            r#"{"done":false,"id":1,"title":"milk"}"#
        );
        assert_eq!(todos.handle(&post).status, 201);
        let done = todos.handle(&HttpRequest::new("POST", "/todos/1/done"));
        assert_eq!(done.body, r#"{"done":true,"id":1,"title":"milk"}"#);
        // Twice done counts once.
        todos.handle(&HttpRequest::new("POST", "/todos/1/done"));
        assert_eq!(
            todos
                .handle(&HttpRequest::new("POST", "/todos/9/done"))
                .status,
            404
        );
        let stats = todos.handle(&HttpRequest::new("GET", "/stats"));
        assert_eq!(stats.body, r#"{"done":1,"open":1,"todos":2}"#);
        let got = todos.handle(&HttpRequest::new("GET", "/todos/1"));
        assert_eq!(got.body, r#"{"done":true,"id":1,"title":"milk"}"#);
    }

    #[test]
    fn up_from_010_opens_every_todo() {
        #[derive(Serialize)]
        struct V010 {
            next_id: u64,
            titles: BTreeMap<u64, String>,
        }
        let bytes = codec::encode(&V010 {
            next_id: 5,
            titles: [(2, "b".to_string()), (5, "e".to_string())].into(),
        })
        .unwrap();
        let extra = codec::encode(&()).unwrap();
        let state = Todos::code_change(OldState {
            from_vsn: "0.1.0",
            direction: Direction::Up,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap();
        assert_eq!(state.next_id, 5);
        assert_eq!(state.done, 0);
        assert_eq!(
            state.items[&5],
            Todo {
                title: "e".into(),
                done: false
            }
        );
        assert_eq!(state.items.len(), 2);
    }
}
