//! Our own routing corpus (`corpus/`, see its DATASHEET.md): route
//! sets written in several phrasings, and routing decisions over them.
//!
//! It is stored as written (route sets and decisions apart) and assembled
//! into [`Case`]s here, so that each decision can be shown with a different
//! phrasing of its routes. Splits are by whole route sets and whole
//! domains, so the unseen-route-set dev measures what users see: their own
//! task descriptions, which no training data holds.
//!
//! - [`Split::DevUnseen`]: every route set of the held-out domains, plus
//!   one route set of every other domain.
//! - [`Split::DevSeen`]: about 15% of the conversations of the remaining
//!   route sets (whole conversations, so no turn leaks into training).
//! - [`Split::Train`]: the rest.
//!
//! Assignment is by SHA-256 of fixed strings, so it never changes with
//! the order of files or lines.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use switchyard_classifier::RouteSpec;
use switchyard_types::{ChatMessage, OTHER_ROUTE};

use crate::{Case, EvalError};

/// Domains held out of training entirely.
pub const HELD_OUT_DOMAINS: &[&str] = &["legal", "medical"];
/// Share of the training route sets' conversations kept for the
/// in-distribution dev, in percent.
const DEV_SEEN_PERCENT: u64 = 15;

/// Where the corpus lives in a checkout.
pub const DEFAULT_CORPUS_DIR: &str = "corpus";

/// A split of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    DevSeen,
    DevUnseen,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::DevSeen => "dev-seen",
            Split::DevUnseen => "dev-unseen",
        }
    }

    pub fn parse(name: &str) -> Option<Split> {
        [Split::Train, Split::DevSeen, Split::DevUnseen]
            .into_iter()
            .find(|split| split.name() == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RouteSet {
    pub id: String,
    pub domain: String,
    #[serde(default)]
    pub title: String,
    pub routes: Vec<CorpusRoute>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CorpusRoute {
    pub name: String,
    /// The same task in several phrasings, as different operators write it.
    pub descriptions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Decision {
    pub id: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    pub route_set: String,
    pub messages: Vec<ChatMessage>,
    pub expected: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Decision {
    pub fn conversation(&self) -> &str {
        self.conversation_id.as_deref().unwrap_or(&self.id)
    }
}

/// The whole corpus, checked.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub sets: BTreeMap<String, RouteSet>,
    pub decisions: Vec<Decision>,
}

/// A 64-bit number from SHA-256 of `parts`: stable across runs and
/// platforms.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Corpus {
    /// Reads `dir/routesets/*.json` and `dir/decisions/*.jsonl`.
    pub fn load(dir: &Path) -> Result<Corpus, EvalError> {
        let mut sets = BTreeMap::new();
        for path in files(&dir.join("routesets"), "json")? {
            let parsed: Vec<RouteSet> = serde_json::from_str(&read(&path)?).map_err(|err| EvalError::Parse {
                path: path.display().to_string(),
                line: err.line(),
                message: err.to_string(),
            })?;
            for set in parsed {
                if set.routes.is_empty() || set.routes.iter().any(|r| r.descriptions.is_empty()) {
                    return Err(invalid(&path, 0, format!("route set {} has a route without descriptions", set.id)));
                }
                sets.insert(set.id.clone(), set);
            }
        }
        let mut decisions = Vec::new();
        for path in files(&dir.join("decisions"), "jsonl")? {
            for (number, line) in read(&path)?.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let decision: Decision =
                    serde_json::from_str(line).map_err(|err| invalid(&path, number + 1, err.to_string()))?;
                let Some(set) = sets.get(&decision.route_set) else {
                    return Err(invalid(&path, number + 1, format!("unknown route set {}", decision.route_set)));
                };
                if decision.expected != OTHER_ROUTE && !set.routes.iter().any(|r| r.name == decision.expected) {
                    return Err(invalid(
                        &path,
                        number + 1,
                        format!("expected {} is not a route of {}", decision.expected, set.id),
                    ));
                }
                decisions.push(decision);
            }
        }
        if decisions.is_empty() {
            return Err(EvalError::Empty {
                path: dir.display().to_string(),
            });
        }
        Ok(Corpus { sets, decisions })
    }

    /// The split a route set belongs to, if it is held out whole.
    fn held_out(&self, set: &RouteSet) -> bool {
        if HELD_OUT_DOMAINS.contains(&set.domain.as_str()) {
            return true;
        }
        // One set per remaining domain: the one whose hash is smallest.
        let chosen = self
            .sets
            .values()
            .filter(|other| other.domain == set.domain)
            .min_by_key(|other| stable_hash(&["switchyard-corpus-unseen", &other.id]))
            .map(|other| other.id.as_str());
        chosen == Some(set.id.as_str())
    }

    /// The split of one decision.
    pub fn split_of(&self, decision: &Decision) -> Split {
        let Some(set) = self.sets.get(&decision.route_set) else {
            return Split::DevUnseen;
        };
        if self.held_out(set) {
            Split::DevUnseen
        } else if stable_hash(&["switchyard-corpus-dev", decision.conversation()]) % 100 < DEV_SEEN_PERCENT {
            Split::DevSeen
        } else {
            Split::Train
        }
    }

    /// The decisions of a split, as written.
    pub fn decisions_in(&self, split: Split) -> Vec<Decision> {
        self.decisions.iter().filter(|d| self.split_of(d) == split).cloned().collect()
    }

    /// Route sets of a split (a set is in train if any decision of it is).
    pub fn sets_in(&self, split: Split) -> HashSet<&str> {
        self.decisions
            .iter()
            .filter(|d| self.split_of(d) == split)
            .map(|d| d.route_set.as_str())
            .collect()
    }

    /// Every route description of the given sets, in every phrasing, as the
    /// classifiers see them ("name: description" is built by each).
    pub fn phrasings<'a>(&'a self, sets: &'a HashSet<&str>) -> impl Iterator<Item = RouteSpec> + 'a {
        self.sets
            .values()
            .filter(|set| sets.contains(set.id.as_str()))
            .flat_map(|set| {
                set.routes.iter().flat_map(|route| {
                    route.descriptions.iter().map(|description| RouteSpec {
                        name: route.name.clone(),
                        description: description.clone(),
                    })
                })
            })
    }

    /// A decision as a case: each route in the phrasing `pick` chooses
    /// (given the route's index and number of phrasings), in the order of
    /// `order` (a permutation key per route).
    pub fn case(
        &self,
        decision: &Decision,
        mut pick: impl FnMut(usize, usize) -> usize,
        mut order: impl FnMut(usize) -> u64,
    ) -> Option<Case> {
        let set = self.sets.get(&decision.route_set)?;
        let mut routes: Vec<(u64, RouteSpec)> = set
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let phrasing = pick(i, route.descriptions.len()) % route.descriptions.len().max(1);
                (
                    order(i),
                    RouteSpec {
                        name: route.name.clone(),
                        description: route.descriptions.get(phrasing).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        routes.sort_by_key(|(key, _)| *key);
        Some(Case {
            id: decision.id.clone(),
            conversation_id: decision.conversation().to_owned(),
            source: format!("corpus/{}", set.domain),
            category: set.id.clone(),
            routes: routes.into_iter().map(|(_, route)| route).collect(),
            messages: decision.messages.clone(),
            expected: decision.expected.clone(),
        })
    }

    /// The cases of a dev split, each route's phrasing and the route order
    /// fixed by hashes of the decision id.
    pub fn cases(&self, split: Split) -> Vec<Case> {
        self.decisions
            .iter()
            .filter(|d| self.split_of(d) == split)
            .filter_map(|d| {
                self.case(
                    d,
                    |route, _| stable_hash(&["phrasing", &d.id, &route.to_string()]) as usize,
                    |route| stable_hash(&["order", &d.id, &route.to_string()]),
                )
            })
            .collect()
    }
}

fn invalid(path: &Path, line: usize, message: String) -> EvalError {
    EvalError::Parse {
        path: path.display().to_string(),
        line,
        message,
    }
}

/// Files of `dir` with extension `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, EvalError> {
    let entries = std::fs::read_dir(dir).map_err(|source| EvalError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads the cases named by `spec`: `corpus:<split>` (optionally
/// `corpus:<split>@<dir>`) for our corpus, otherwise a JSONL file in the
/// shared format.
pub fn read_spec(spec: &Path, limit: Option<usize>) -> Result<Vec<Case>, EvalError> {
    let text = spec.to_string_lossy();
    let Some(rest) = text.strip_prefix("corpus:") else {
        return crate::read_cases(spec, limit);
    };
    let (split, dir) = rest.split_once('@').unwrap_or((rest, DEFAULT_CORPUS_DIR));
    let split = Split::parse(split).ok_or_else(|| EvalError::Parse {
        path: text.to_string(),
        line: 0,
        message: format!("unknown corpus split `{split}`; expected train, dev-seen or dev-unseen"),
    })?;
    let mut cases = Corpus::load(Path::new(dir))?.cases(split);
    if let Some(limit) = limit {
        cases.truncate(limit);
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Corpus {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(DEFAULT_CORPUS_DIR);
        Corpus::load(&dir).unwrap()
    }

    #[test]
    fn splits_hold_out_whole_sets_and_whole_conversations() {
        let corpus = corpus();
        let train = corpus.sets_in(Split::Train);
        let unseen = corpus.sets_in(Split::DevUnseen);
        assert!(train.is_disjoint(&unseen), "a route set is both trained on and held out");
        assert!(!unseen.is_empty() && !corpus.sets_in(Split::DevSeen).is_empty());
        for domain in HELD_OUT_DOMAINS {
            assert!(train.iter().all(|set| !set.starts_with(&format!("{domain}-"))));
        }
        let mut seen = std::collections::HashMap::new();
        for decision in &corpus.decisions {
            let split = corpus.split_of(decision);
            let previous = seen.insert(decision.conversation().to_owned(), split);
            assert!(previous.is_none_or(|p| p == split), "conversation {} is split", decision.conversation());
        }
    }

    #[test]
    fn dev_cases_are_deterministic_and_valid() {
        let corpus = corpus();
        let a = corpus.cases(Split::DevUnseen);
        let b = corpus.cases(Split::DevUnseen);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.routes, y.routes);
            assert!(x.expects_other() || x.routes.iter().any(|r| r.name == x.expected));
        }
    }
}
