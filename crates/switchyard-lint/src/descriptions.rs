//! Checks on the words of each description, no encoder needed.

use switchyard_config::Router;

use crate::words;
use crate::{Check, Finding, LintOptions, Severity};

/// The word checks' findings, and what the encoder checks build on.
#[derive(Debug, Default)]
pub(crate) struct Described {
    pub findings: Vec<Finding>,
    /// Pairs of task indexes (lower first) with the same description:
    /// already an error, so not measured again as an overlap.
    pub duplicates: Vec<(usize, usize)>,
    /// Tasks none of whose name's content words appear in the description,
    /// with those words: candidates for a name mismatch.
    pub unnamed: Vec<(usize, Vec<String>)>,
}

pub(crate) fn check(router: &Router, options: &LintOptions) -> Described {
    let mut described = Described::default();
    let normalized: Vec<String> = router
        .tasks
        .iter()
        .map(|task| words::normalized(&task.description))
        .collect();
    for (index, task) in router.tasks.iter().enumerate() {
        let content = words::content_words(&task.description);
        if content.len() < options.min_content_words {
            described.findings.push(
                Finding::new(
                    Severity::Warning,
                    router,
                    Check::ShortDescription,
                    format!(
                        "{} content word(s) ({}); fewer than {} leave the encoder little to place the task by: name what its requests are about",
                        content.len(),
                        content.join(", "),
                        options.min_content_words
                    ),
                )
                .task(&task.name),
            );
        }
        let vague = words::vague_words(&task.description);
        #[allow(clippy::cast_precision_loss, reason = "word counts are small")]
        let ratio = vague.len() as f32 / content.len().max(1) as f32;
        if vague.len() >= 2 && ratio >= options.adjective_ratio {
            described.findings.push(
                Finding::new(
                    Severity::Warning,
                    router,
                    Check::Adjectives,
                    format!(
                        "{} of {} content words are vague qualifiers ({}): say what the requests are about (subjects, artefacts, examples), not how good or hard they are",
                        vague.len(),
                        content.len(),
                        vague.join(", ")
                    ),
                )
                .task(&task.name)
                .score(ratio),
            );
        }
        for (other_index, other) in router.tasks.iter().enumerate().skip(index + 1) {
            if !normalized[index].is_empty() && normalized[index] == normalized[other_index] {
                described.duplicates.push((index, other_index));
                described.findings.push(
                    Finding::new(
                        Severity::Error,
                        router,
                        Check::DuplicateDescription,
                        format!(
                            "`{}` and `{}` have the same description: the classifier cannot tell them apart",
                            task.name, other.name
                        ),
                    )
                    .task(&task.name)
                    .other(&other.name),
                );
            }
        }
        let name_words = words::name_content_words(&task.name);
        if !name_words.is_empty()
            && words::name_words_in_description(&task.name, &task.description).is_empty()
        {
            described.unnamed.push((index, name_words));
        }
    }
    described
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use switchyard_config::{SelectionPolicy, Task};

    use super::*;

    fn router(tasks: &[(&str, &str)]) -> Router {
        Router {
            name: "r".to_owned(),
            description: None,
            tasks: tasks
                .iter()
                .map(|(name, description)| Task {
                    name: (*name).to_owned(),
                    description: (*description).to_owned(),
                    models: vec!["m".to_owned()],
                    policy: SelectionPolicy::Manual,
                })
                .collect(),
            fallback_models: vec!["m".to_owned()],
            route_on_user_only: true,
        }
    }

    fn checks(described: &Described) -> Vec<(Check, Option<&str>)> {
        described
            .findings
            .iter()
            .map(|f| (f.check, f.task.as_deref()))
            .collect()
    }

    #[test]
    fn well_described_tasks_have_no_word_findings() {
        let described = check(
            &router(&[
                (
                    "debugging",
                    "Bugs, errors, exceptions, stack traces, crashes and failing tests - diagnosis and fixes",
                ),
                (
                    "translation",
                    "Translation of text between languages - French, Spanish, German",
                ),
            ]),
            &LintOptions::default(),
        );
        assert!(described.findings.is_empty(), "{:?}", described.findings);
        assert_eq!(
            described.unnamed.len(),
            1,
            "`debugging` is not spelled out in its description"
        );
        assert_eq!(described.unnamed[0], (0, vec!["debugging".to_owned()]));
    }

    #[test]
    fn vague_short_and_duplicated_descriptions_are_found() {
        let described = check(
            &router(&[
                (
                    "smart",
                    "Fast, smart, high quality answers for complex and advanced questions",
                ),
                ("math", "math tutor"),
                ("a_fix", "Fix bugs in code."),
                ("b_fix", "fix the bugs in code"),
            ]),
            &LintOptions::default(),
        );
        assert_eq!(
            checks(&described),
            [
                (Check::Adjectives, Some("smart")),
                (Check::ShortDescription, Some("math")),
                (Check::ShortDescription, Some("a_fix")),
                (Check::DuplicateDescription, Some("a_fix")),
                (Check::ShortDescription, Some("b_fix")),
            ]
        );
        let adjectives = &described.findings[0];
        assert!(
            adjectives
                .message
                .contains("fast, smart, high, quality, complex, advanced"),
            "{}",
            adjectives.message
        );
        assert_eq!(described.findings[3].other_task.as_deref(), Some("b_fix"));
        assert_eq!(described.findings[3].severity, Severity::Error);
        assert_eq!(described.duplicates, [(2, 3)]);
    }

    #[test]
    fn a_few_qualifiers_among_many_subjects_pass() {
        let described = check(
            &router(&[(
                "sql",
                "Fast answers on SQL queries, schemas, indexes, migrations and query plans",
            )]),
            &LintOptions::default(),
        );
        assert!(described.findings.is_empty(), "{:?}", described.findings);
    }
}
