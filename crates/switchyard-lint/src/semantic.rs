//! Checks in the sentence encoder's space: descriptions close enough that
//! the classifier confuses their tasks, and names that read as another
//! task's description.

use switchyard_config::Router;
use switchyard_encoder::{Encoder, cosine};

use crate::descriptions::Described;
use crate::words;
use crate::{Check, Finding, LintError, LintOptions, Severity};

pub(crate) fn check(
    router: &Router,
    encoder: &Encoder,
    options: &LintOptions,
    described: &Described,
) -> Result<Vec<Finding>, LintError> {
    let names: Vec<String> = router
        .tasks
        .iter()
        .map(|task| words::humanize(&task.name))
        .collect();
    let texts: Vec<&str> = router
        .tasks
        .iter()
        .map(|task| task.description.as_str())
        .chain(names.iter().map(String::as_str))
        .collect();
    let vectors = encoder.embed(&texts)?;
    let (descriptions, names) = vectors.split_at(router.tasks.len());
    let mut findings = overlaps(router, options, described, |i, j| {
        cosine(&descriptions[i], &descriptions[j])
    });
    findings.extend(name_mismatches(
        router,
        options,
        described,
        |name, description| cosine(&names[name], &descriptions[description]),
    ));
    Ok(findings)
}

/// What is left to say without an encoder: that overlap was not measured,
/// and the names that share no word with their description.
pub(crate) fn skipped(router: &Router, described: &Described) -> Vec<Finding> {
    let mut findings = Vec::new();
    if router.tasks.len() > 1 {
        findings.push(Finding::new(
            Severity::Warning,
            router,
            Check::OverlapNotChecked,
            "overlap between descriptions not checked: no sentence encoder (run models/fetch.sh)"
                .to_owned(),
        ));
    }
    for (index, name_words) in &described.unnamed {
        let Some(task) = router.tasks.get(*index) else {
            continue;
        };
        findings.push(
            Finding::new(
                Severity::Warning,
                router,
                Check::NameMismatch,
                format!(
                    "none of the name's words ({}) appears in its description; not compared by meaning (no encoder)",
                    name_words.join(", ")
                ),
            )
            .task(&task.name),
        );
    }
    findings
}

/// Every pair of tasks whose descriptions score at or above the warning
/// threshold, duplicates left out (already errors).
fn overlaps(
    router: &Router,
    options: &LintOptions,
    described: &Described,
    similarity: impl Fn(usize, usize) -> f32,
) -> Vec<Finding> {
    let warning = options.overlap_warning.min(options.overlap_threshold);
    let mut findings = Vec::new();
    for (i, task) in router.tasks.iter().enumerate() {
        for (j, other) in router.tasks.iter().enumerate().skip(i + 1) {
            if described.duplicates.contains(&(i, j)) {
                continue;
            }
            let score = similarity(i, j);
            let severity = if score >= options.overlap_threshold {
                Severity::Error
            } else if score >= warning {
                Severity::Warning
            } else {
                continue;
            };
            let limit = match severity {
                Severity::Error => options.overlap_threshold,
                Severity::Warning => warning,
            };
            findings.push(
                Finding::new(
                    severity,
                    router,
                    Check::Overlap,
                    format!(
                        "descriptions of `{}` and `{}` are {score:.3} similar (>= {limit:.2}): requests for one will route to the other; describe what sets them apart",
                        task.name, other.name
                    ),
                )
                .task(&task.name)
                .other(&other.name)
                .score(score),
            );
        }
    }
    findings
}

/// Whether `description` refers to the task `name` ("... goes to
/// essay_feedback", "pure speed work belongs to performance tuning"):
/// such an exclusion makes the description close to that task's name by
/// construction, which says nothing about a swap. Only names of several
/// words count: a one-word name ("translation") in another description
/// is indistinguishable from a description written for that task.
fn names_task(description: &str, name: &str) -> bool {
    let humanized = words::humanize(name);
    if !humanized.contains(' ') {
        return false;
    }
    let description = description.to_lowercase();
    description.contains(&name.to_lowercase()) || description.contains(&humanized)
}

/// Names that share no word with their description and, by meaning, sit
/// closer to another task's description than to their own (or far from
/// their own when there is no other).
fn name_mismatches(
    router: &Router,
    options: &LintOptions,
    described: &Described,
    similarity: impl Fn(usize, usize) -> f32,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, name_words) in &described.unnamed {
        let index = *index;
        let Some(task) = router.tasks.get(index) else {
            continue;
        };
        let own = similarity(index, index);
        let closest = (0..router.tasks.len())
            .filter(|&other| {
                other != index
                    && !router
                        .tasks
                        .get(other)
                        .is_some_and(|other| names_task(&other.description, &task.name))
            })
            .map(|other| (other, similarity(index, other)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let unnamed = format!(
            "none of the name's words ({}) appears in its description",
            name_words.join(", ")
        );
        let finding = match closest {
            Some((other, score)) if score - own >= options.name_warning_margin => {
                let severity = if score - own >= options.name_error_margin {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let other_name = router
                    .tasks
                    .get(other)
                    .map_or("", |other| other.name.as_str());
                Finding::new(
                    severity,
                    router,
                    Check::NameMismatch,
                    format!(
                        "{unnamed}, and the name reads closer to `{other_name}`'s description ({score:.3}) than to its own ({own:.3}): swapped names, or a description of another task?"
                    ),
                )
                .other(other_name)
                .score(own)
            }
            _ if own < options.name_floor => Finding::new(
                Severity::Warning,
                router,
                Check::NameMismatch,
                format!(
                    "{unnamed}, and the name is unrelated to it by meaning ({own:.3} < {:.2})",
                    options.name_floor
                ),
            )
            .score(own),
            _ => continue,
        };
        findings.push(finding.task(&task.name));
    }
    findings
}

#[cfg(test)]
mod tests {
    use switchyard_config::{SelectionPolicy, Task};

    use super::*;

    fn router(names: &[&str]) -> Router {
        Router {
            name: "r".to_owned(),
            description: None,
            tasks: names
                .iter()
                .map(|name| Task {
                    name: (*name).to_owned(),
                    description: format!("{name} description"),
                    models: vec!["m".to_owned()],
                    policy: SelectionPolicy::Manual,
                })
                .collect(),
            fallback_models: vec!["m".to_owned()],
            route_on_user_only: true,
        }
    }

    #[test]
    fn overlap_grades_pairs_by_threshold_and_skips_duplicates() {
        let router = router(&["a", "b", "c"]);
        let scores = |i: usize, j: usize| match (i, j) {
            (0, 1) => 0.75,
            (0, 2) => 0.65,
            _ => 0.99,
        };
        let described = Described {
            duplicates: vec![(1, 2)],
            ..Described::default()
        };
        let findings = overlaps(&router, &LintOptions::default(), &described, scores);
        let seen: Vec<_> = findings
            .iter()
            .map(|f| (f.severity, f.task.as_deref(), f.other_task.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                (Severity::Error, Some("a"), Some("b")),
                (Severity::Warning, Some("a"), Some("c"))
            ]
        );
        assert!(
            findings[0].message.contains("0.750"),
            "{}",
            findings[0].message
        );
        let lowered = LintOptions {
            overlap_threshold: 0.5,
            ..LintOptions::default()
        };
        let findings = overlaps(&router, &lowered, &described, scores);
        assert!(
            findings.iter().all(|f| f.severity == Severity::Error),
            "warning capped at the threshold"
        );
    }

    #[test]
    fn a_name_closer_to_another_description_is_a_mismatch() {
        let router = router(&["translation", "poetry", "math"]);
        let described = Described {
            unnamed: vec![
                (0, vec!["translation".to_owned()]),
                (2, vec!["math".to_owned()]),
            ],
            ..Described::default()
        };
        // translation: own 0.1, poetry's 0.5 (error); math: own 0.5 (fine).
        let scores = |name: usize, description: usize| match (name, description) {
            (0, 1) => 0.5,
            (2, 2) => 0.5,
            _ => 0.1,
        };
        let findings = name_mismatches(&router, &LintOptions::default(), &described, scores);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Error);
        assert_eq!(findings[0].task.as_deref(), Some("translation"));
        assert_eq!(findings[0].other_task.as_deref(), Some("poetry"));
        let near = |name: usize, description: usize| {
            if (name, description) == (0, 1) {
                0.4
            } else {
                0.25
            }
        };
        let findings = name_mismatches(&router, &LintOptions::default(), &described, near);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            findings[0].severity,
            Severity::Warning,
            "closer, but not by a clear margin"
        );
        let noise = |name: usize, description: usize| {
            if (name, description) == (0, 1) {
                0.3
            } else {
                0.25
            }
        };
        let findings = name_mismatches(&router, &LintOptions::default(), &described, noise);
        assert!(
            findings.is_empty(),
            "a lead under the warning margin is noise: {findings:?}"
        );
    }
}
