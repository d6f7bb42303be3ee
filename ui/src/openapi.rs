//! The API's description: `GET /api/v1/openapi.json`, the OpenAPI 3.1 document written by
//! hand in `ui/openapi.yaml`.
//!
//! The YAML is the source, since it carries comments and reads well in review; it is built
//! into the binary and turned into JSON once, at the first request. It is public, like
//! `/healthz`: it says what the source code says, and tools (Schemathesis, client
//! generators) read it before they hold a token. The tests below keep it in step with
//! [`vigil_access::routes::ROUTES`]: every API route has its operation and every operation its
//! route.

use std::collections::HashSet;
use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

use crate::UiState;

/// The description as written.
pub const SOURCE: &str = include_str!("../openapi.yaml");

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/api/v1/openapi.json", get(serve))
}

/// The description as a JSON value, converted at the first call; an error says why the
/// YAML is not a description (the tests make sure it is).
pub fn document() -> Result<&'static Value, &'static str> {
    static DOCUMENT: OnceLock<Result<Value, String>> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| parse(SOURCE))
        .as_ref()
        .map_err(String::as_str)
}

/// The JSON text served, written once.
fn json_text() -> Result<&'static str, &'static str> {
    static TEXT: OnceLock<Result<String, String>> = OnceLock::new();
    TEXT.get_or_init(|| {
        let document = document().map_err(str::to_owned)?;
        serde_json::to_string(document).map_err(|error| error.to_string())
    })
    .as_ref()
    .map(String::as_str)
    .map_err(String::as_str)
}

async fn serve() -> Response {
    match json_text() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error, "the API description does not convert to JSON");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({ "error": "the API description is broken; see the server log" })),
            )
                .into_response()
        }
    }
}

/// Reads one YAML document into JSON.
fn parse(text: &str) -> Result<Value, String> {
    check_keys(text)?;
    let mut documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    if documents.len() != 1 {
        return Err(format!(
            "expected one YAML document, found {}",
            documents.len()
        ));
    }
    to_json(documents.remove(0), "")
}

/// Refuses a key given twice in one mapping, which YAML forbids and the loader would take
/// silently, the last one winning: a second `get:` under a path would hide the first.
fn check_keys(text: &str) -> Result<(), String> {
    enum Frame {
        Map {
            keys: HashSet<String>,
            key_next: bool,
        },
        Seq,
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        let (event, mark) = parser.next_token().map_err(|error| error.to_string())?;
        let node = matches!(
            event,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(_)
        );
        if let (true, Some(Frame::Map { keys, key_next })) = (node, stack.last_mut()) {
            if *key_next {
                let Event::Scalar(key, ..) = &event else {
                    return Err(format!("line {}: a key that is not text", mark.line()));
                };
                if !keys.insert(key.clone()) {
                    return Err(format!(
                        "line {}: the key {key:?} is given twice",
                        mark.line()
                    ));
                }
            }
            *key_next = !*key_next;
        }
        match event {
            Event::MappingStart(..) => stack.push(Frame::Map {
                keys: HashSet::new(),
                key_next: true,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

/// Converts a YAML value to JSON; `at` is its path, for the error.
fn to_json(yaml: Yaml, at: &str) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(value) => Value::Bool(value),
        Yaml::Integer(value) => Value::Number(value.into()),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{at}: {text:?} is not a finite number"))?,
        Yaml::String(text) => Value::String(text),
        Yaml::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| to_json(item, &format!("{at}/{index}")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(entries) => {
            let mut object = Map::new();
            for (key, value) in entries {
                // Status codes are written as strings; a bare 200 would be an integer key.
                let key = match key {
                    Yaml::String(text) => text,
                    Yaml::Integer(number) => number.to_string(),
                    other => return Err(format!("{at}: a key that is not text: {other:?}")),
                };
                let value = to_json(value, &format!("{at}/{key}"))?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format!("{at}: aliases and bad values are not JSON"))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use vigil_access::routes::{Need, Surface, ROUTES};

    use super::*;

    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

    fn described() -> &'static Value {
        document().expect("ui/openapi.yaml is a valid description")
    }

    /// Every (method, path) the description has an operation for.
    fn operations(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"].as_object().expect("paths is an object");
        let mut found = BTreeSet::new();
        for (path, item) in paths {
            for key in item.as_object().expect("a path item is an object").keys() {
                if METHODS.contains(&key.as_str()) {
                    found.insert((key.to_uppercase(), path.clone()));
                } else {
                    assert!(
                        ["parameters", "summary", "description"].contains(&key.as_str()),
                        "{path}: {key} is not an operation"
                    );
                }
            }
        }
        found
    }

    fn api_routes() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .filter(|route| route.path.starts_with("/api/v1/"))
            .map(|route| {
                assert_eq!(route.surface, Surface::Api, "{}", route.path);
                (route.method.to_owned(), route.path.to_owned())
            })
            .collect()
    }

    /// Names what `left` has that `right` lacks, one a line.
    fn missing(left: &BTreeSet<(String, String)>, right: &BTreeSet<(String, String)>) -> String {
        left.difference(right)
            .map(|(method, path)| format!("  {method} {path}\n"))
            .collect()
    }

    #[test]
    fn the_description_has_an_operation_for_every_api_route_and_no_other() {
        let routes = api_routes();
        let described = operations(described());
        let undescribed = missing(&routes, &described);
        let unrouted = missing(&described, &routes);
        assert!(
            undescribed.is_empty() && unrouted.is_empty(),
            "ui/openapi.yaml and vigil_access::routes::ROUTES disagree.\n\
             Routes with no operation in the description:\n{undescribed}\
             Operations with no route:\n{unrouted}"
        );
    }

    /// An operation's security and refusals follow what its route needs: a public route asks
    /// for no token, every other one answers 401 without one, and 403 when it needs a
    /// permission the token may lack.
    #[test]
    fn each_operation_documents_what_its_route_needs() {
        let document = described();
        let global = document["security"].clone();
        assert_eq!(global, serde_json::json!([{ "bearer": [] }]));
        for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/v1/")) {
            let operation = &document["paths"][route.path][route.method.to_lowercase()];
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let what = format!("{} {}", route.method, route.path);
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{what}: no success response"
            );
            assert!(
                operation["operationId"].is_string(),
                "{what}: no operationId"
            );
            match route.need {
                Need::Public => {
                    assert_eq!(operation["security"], serde_json::json!([]), "{what}");
                }
                Need::OwnKey => panic!("{what}: no API route takes a key of its own"),
                Need::SignedIn => {
                    assert!(operation.get("security").is_none(), "{what}");
                    assert!(has("401") && has("429"), "{what}: 401 and 429");
                }
                Need::Permission(_) => {
                    assert!(operation.get("security").is_none(), "{what}");
                    assert!(
                        has("401") && has("403") && has("429"),
                        "{what}: 401, 403 and 429"
                    );
                }
            }
        }
    }

    /// Every `$ref` points at something the document has, and each component is used.
    #[test]
    fn every_reference_resolves() {
        fn refs(value: &Value, found: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    if let Some(Value::String(target)) = object.get("$ref") {
                        found.push(target.clone());
                    }
                    object.values().for_each(|v| refs(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let document = described();
        let mut found = Vec::new();
        refs(document, &mut found);
        assert!(found.len() > 50, "{} references", found.len());
        for target in &found {
            let pointer = target
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{target}: only local references"));
            assert!(
                document.pointer(pointer).is_some(),
                "{target} points at nothing"
            );
        }
        for (kind, entries) in document["components"].as_object().unwrap() {
            if kind == "securitySchemes" {
                continue;
            }
            for name in entries.as_object().unwrap().keys() {
                let target = format!("#/components/{kind}/{name}");
                assert!(found.contains(&target), "{target} is never used");
            }
        }
    }

    #[test]
    fn yaml_becomes_json_as_written() {
        let value = parse("a: 1\n\"200\": x\n201: y\nb: [1.5, true, null, \"2\"]\n").unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "a": 1, "200": "x", "201": "y", "b": [1.5, true, null, "2"] })
        );
        assert!(parse("a: 1\na: 2\n").unwrap_err().contains("twice"));
        assert!(parse("p:\n  get: 1\n  post: [{x: 1}, {x: 2}]\n  get: 2\n")
            .unwrap_err()
            .contains("line 4: the key \"get\" is given twice"));
        // The same key in sibling mappings is no repeat.
        assert!(parse("a: {x: 1}\nb: {x: 1}\nc: [{x: 1}, {x: 2}]\n").is_ok());
        assert!(parse("a: .nan\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    /// Served without credentials, as JSON, the same document.
    #[tokio::test]
    async fn it_is_served_to_anyone_as_json() {
        let dir = tempfile::TempDir::new().unwrap();
        let (state, gate) = crate::tests::test_state(dir.path(), None);
        let router = crate::guard(crate::api_router(state), gate);
        let response = router
            .oneshot(
                Request::get("/api/v1/openapi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let served: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(&served, described());
        assert_eq!(served["openapi"], "3.1.0");
        assert_eq!(served["info"]["title"], "Vigil API");
    }
}
