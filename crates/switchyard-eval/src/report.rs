//! Accuracy figures and how they are printed.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::Outcome;
use crate::dataset::Case;

/// Decision latency percentiles.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
}

/// Figures for a subset of cases.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub cases: usize,
    /// Share of turns routed to the expected route.
    pub accuracy: f64,
    /// Share of `other` cases answered `other`; `null` when there are none.
    pub other_recall: Option<f64>,
    /// Share of conversations whose every turn was right.
    pub conversation_accuracy: f64,
}

/// The whole evaluation, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub classifier: String,
    pub cases: usize,
    pub accuracy: f64,
    pub other_recall: Option<f64>,
    pub conversation_accuracy: f64,
    pub by_source: BTreeMap<String, Group>,
    pub by_category: BTreeMap<String, Group>,
    pub latency_ms: LatencyMs,
}

fn group<'a>(items: impl Iterator<Item = (&'a Case, &'a Outcome)>) -> Group {
    let mut cases = 0;
    let mut correct = 0;
    let mut other = 0;
    let mut other_correct = 0;
    let mut conversations: HashMap<&str, bool> = HashMap::new();
    for (case, outcome) in items {
        let right = outcome.predicted == case.expected;
        cases += 1;
        correct += usize::from(right);
        if case.expects_other() {
            other += 1;
            other_correct += usize::from(right);
        }
        *conversations
            .entry(case.conversation_id.as_str())
            .or_insert(true) &= right;
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Group {
        cases,
        accuracy: ratio(correct, cases),
        other_recall: (other > 0).then(|| ratio(other_correct, other)),
        conversation_accuracy: ratio(
            conversations.values().filter(|all_right| **all_right).count(),
            conversations.len(),
        ),
    }
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

impl Report {
    pub fn build(classifier: &str, cases: &[Case], outcomes: &[Outcome]) -> Report {
        let pairs = || cases.iter().zip(outcomes);
        let overall = group(pairs());
        let mut by_source = BTreeMap::new();
        let mut by_category = BTreeMap::new();
        for case in cases {
            by_source.entry(case.source.clone()).or_insert(());
            by_category.entry(case.category.clone()).or_insert(());
        }
        let by_source = by_source
            .into_keys()
            .map(|source| {
                let figures = group(pairs().filter(|(case, _)| case.source == source));
                (source, figures)
            })
            .collect();
        let by_category = by_category
            .into_keys()
            .map(|category| {
                let figures = group(pairs().filter(|(case, _)| case.category == category));
                (category, figures)
            })
            .collect();
        let mut latencies: Vec<f64> = outcomes.iter().map(|o| o.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        Report {
            classifier: classifier.to_owned(),
            cases: overall.cases,
            accuracy: overall.accuracy,
            other_recall: overall.other_recall,
            conversation_accuracy: overall.conversation_accuracy,
            by_source,
            by_category,
            latency_ms: LatencyMs {
                p50: percentile(&latencies, 0.50),
                p99: percentile(&latencies, 0.99),
            },
        }
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let pct = |v: f64| format!("{:6.2}%", v * 100.0);
        let other = |v: Option<f64>| v.map_or_else(|| "      -".to_owned(), pct);
        let mut out = format!(
            "classifier {}: {} cases\n\n{:<32} {:>7} {:>9} {:>12} {:>12}\n",
            self.classifier, self.cases, "group", "cases", "accuracy", "other recall", "conv. acc."
        );
        let mut row = |name: &str, g: &Group| {
            out.push_str(&format!(
                "{:<32} {:>7} {:>9} {:>12} {:>12}\n",
                name,
                g.cases,
                pct(g.accuracy),
                other(g.other_recall),
                pct(g.conversation_accuracy)
            ));
        };
        row(
            "all",
            &Group {
                cases: self.cases,
                accuracy: self.accuracy,
                other_recall: self.other_recall,
                conversation_accuracy: self.conversation_accuracy,
            },
        );
        for (source, g) in &self.by_source {
            row(&format!("source {source}"), g);
        }
        for (category, g) in &self.by_category {
            row(&format!("category {category}"), g);
        }
        out.push_str(&format!(
            "\ndecision latency: p50 {:.3} ms, p99 {:.3} ms\n",
            self.latency_ms.p50, self.latency_ms.p99
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use switchyard_classifier::RouteSpec;

    use super::*;

    fn case(id: &str, conversation: &str, expected: &str) -> Case {
        Case {
            id: id.to_owned(),
            conversation_id: conversation.to_owned(),
            source: "s".to_owned(),
            category: "c".to_owned(),
            routes: vec![RouteSpec {
                name: "a".to_owned(),
                description: "a".to_owned(),
            }],
            messages: vec![],
            expected: expected.to_owned(),
        }
    }

    fn predicted(route: &str, latency_ms: f64) -> Outcome {
        Outcome {
            predicted: route.to_owned(),
            latency_ms,
        }
    }

    #[test]
    fn figures_count_turns_other_and_whole_conversations() {
        let cases = [
            case("1", "x", "a"),
            case("2", "x", "a"),
            case("3", "y", "other"),
            case("4", "z", "other"),
        ];
        let outcomes = [
            predicted("a", 1.0),
            predicted("other", 2.0),
            predicted("other", 3.0),
            predicted("a", 4.0),
        ];
        let report = Report::build("t", &cases, &outcomes);
        assert_eq!(report.cases, 4);
        assert!((report.accuracy - 0.5).abs() < 1e-9);
        assert_eq!(report.other_recall, Some(0.5));
        // x has a wrong turn, y is right, z is wrong.
        assert!((report.conversation_accuracy - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(report.latency_ms.p50, 2.0);
        assert_eq!(report.latency_ms.p99, 4.0);
    }
}
