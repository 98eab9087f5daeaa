//! Reading the shared JSONL routing format.

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;
use switchyard_classifier::RouteSpec;
use switchyard_types::{ChatMessage, OTHER_ROUTE};

use crate::EvalError;

#[derive(Debug, Deserialize)]
struct RawRoute {
    name: String,
    description: String,
}

#[derive(Debug, Deserialize)]
struct RawCase {
    id: String,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    category: Option<String>,
    routes: Vec<RawRoute>,
    messages: Vec<ChatMessage>,
    expected: String,
}

/// One routing decision to check.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub conversation_id: String,
    pub source: String,
    pub category: String,
    pub routes: Vec<RouteSpec>,
    pub messages: Vec<ChatMessage>,
    pub expected: String,
}

impl Case {
    pub fn expects_other(&self) -> bool {
        self.expected == OTHER_ROUTE
    }
}

/// Reads up to `limit` cases, checking each line as it goes.
pub fn read_cases(path: &Path, limit: Option<usize>) -> Result<Vec<Case>, EvalError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| EvalError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut cases = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|limit| cases.len() >= limit) {
            break;
        }
        let line = line.map_err(|source| EvalError::Read {
            path: shown.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parse_error = |message: String| EvalError::Parse {
            path: shown.clone(),
            line: number + 1,
            message,
        };
        let raw: RawCase = serde_json::from_str(&line).map_err(|err| parse_error(err.to_string()))?;
        if raw.routes.is_empty() {
            return Err(parse_error("`routes` is empty".to_owned()));
        }
        if raw.messages.is_empty() {
            return Err(parse_error("`messages` is empty".to_owned()));
        }
        if raw.expected != OTHER_ROUTE && !raw.routes.iter().any(|r| r.name == raw.expected) {
            return Err(parse_error(format!(
                "`expected` is `{}`, which is neither a route of the line nor `other`",
                raw.expected
            )));
        }
        let multi_turn = raw.messages.len() > 1;
        let category = raw.category.unwrap_or_else(|| {
            format!(
                "{}/{}",
                if multi_turn { "multi_turn" } else { "single_turn" },
                if raw.expected == OTHER_ROUTE { "other" } else { "in_scope" }
            )
        });
        cases.push(Case {
            conversation_id: raw.conversation_id.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            source: raw.source.unwrap_or_else(|| "unknown".to_owned()),
            category,
            routes: raw
                .routes
                .into_iter()
                .map(|r| RouteSpec {
                    name: r.name,
                    description: r.description,
                })
                .collect(),
            messages: raw.messages,
            expected: raw.expected,
        });
    }
    if cases.is_empty() {
        return Err(EvalError::Empty { path: shown });
    }
    Ok(cases)
}
