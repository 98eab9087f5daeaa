//! Routing accuracy on labelled data: `switchyard eval`.
//!
//! Beside the request path, not on it: each line of a dataset in the shared
//! JSONL format (a conversation, its own route list, the expected route or
//! `other`) is classified against its own routes with the same
//! [`Classifier`](switchyard_classifier::Classifier) the node uses, and the
//! results are summed up by source and by category.
//!
//! Categories: a line's `category` field when it has one; otherwise the
//! kind of case, `single_turn` or `multi_turn`, then `/in_scope` or
//! `/other` by its expected answer.
//!
//! Layout: [`compare`] sends a dataset through a running node, routed and
//! straight to a baseline model, for cost and latency (`switchyard compare`).

pub mod compare;
pub mod corpus;
mod dataset;
mod report;

pub use corpus::{Corpus, Split, read_spec};
pub use dataset::{Case, read_cases};
pub use report::{Group, LatencyMs, Report};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use switchyard_classifier::{Classifier, RouteIndex, RouteSpec};
use switchyard_types::{Conversation, OTHER_ROUTE};

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path} holds no cases")]
    Empty { path: String },
    #[error(transparent)]
    Classifier(#[from] switchyard_classifier::ClassifierError),
}

/// One classified case.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub predicted: String,
    pub latency_ms: f64,
}

/// Prepared route sets kept across cases: dialogues repeat their route list
/// on every turn, and preparing is the costly part for learned classifiers.
const INDEX_CACHE_LIMIT: usize = 4096;

/// Classifies every case; `progress` is called after each one.
pub fn evaluate(
    classifier: &dyn Classifier,
    cases: &[Case],
    mut progress: impl FnMut(),
) -> Result<Report, EvalError> {
    let mut indexes: HashMap<Vec<RouteSpec>, Arc<dyn RouteIndex>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        let index = match indexes.get(&case.routes) {
            Some(index) => Arc::clone(index),
            None => {
                if indexes.len() >= INDEX_CACHE_LIMIT {
                    indexes.clear();
                }
                let index = classifier.prepare(&case.routes)?;
                indexes.insert(case.routes.clone(), Arc::clone(&index));
                index
            }
        };
        let conversation = Conversation::from_messages(&case.messages);
        let started = Instant::now();
        let classification = index.classify(&conversation)?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let predicted = classification
            .route
            .and_then(|i| case.routes.get(i))
            .map_or_else(|| OTHER_ROUTE.to_owned(), |route| route.name.clone());
        outcomes.push(Outcome {
            predicted,
            latency_ms,
        });
        progress();
    }
    Ok(Report::build(classifier.name(), cases, &outcomes))
}
