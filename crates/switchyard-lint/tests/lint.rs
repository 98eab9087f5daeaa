//! `lint` over real configs, with the real sentence encoder (fetched by
//! models/fetch.sh into models/cache/all-minilm-l6-v2; a missing encoder
//! fails these tests rather than skipping them).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap is a failed test"
)]

use std::collections::HashMap;
use std::sync::OnceLock;

use switchyard_config::Config;
use switchyard_encoder::Encoder;
use switchyard_lint::{Check, Finding, LintOptions, Severity, lint, load_encoder};

const MODEL_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/cache/all-minilm-l6-v2"
);

fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        load_encoder(MODEL_DIR.as_ref()).expect("the encoder (run models/fetch.sh)")
    })
}

/// A config with two keyed providers (`KEY_A` set, `KEY_B` not unless
/// `env` says so) and `routers` (YAML list items) over their models.
fn config(routers: &str, env: &[(&str, &str)]) -> Config {
    let yaml = format!(
        "demo: off
providers:
  - {{ name: a, kind: openai, base_url: \"http://127.0.0.1:9/v1\", api_key_env: KEY_A }}
  - {{ name: b, kind: openai, base_url: \"http://127.0.0.1:9/v1\", api_key_env: KEY_B }}
models:
  - {{ id: a1, provider: a, price: {{ input: 1, output: 1 }} }}
  - {{ id: a2, provider: a, price: {{ input: 1, output: 1 }} }}
  - {{ id: b1, provider: b, price: {{ input: 1, output: 1 }} }}
  - {{ id: b2, provider: b, price: {{ input: 1, output: 1 }} }}
routers:
{routers}"
    );
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.insert("KEY_A".to_owned(), "secret".to_owned());
    Config::from_yaml(&yaml, &env).unwrap()
}

/// One router `r` over `tasks` (name, description), pools [a1] and fallback
/// [a2, b1], which give no fallback findings once `KEY_B` is set.
fn router(tasks: &[(&str, &str)]) -> String {
    let tasks: String = tasks
        .iter()
        .map(|(name, description)| {
            format!("      - {{ name: {name}, description: \"{description}\", models: [a1] }}\n")
        })
        .collect();
    format!("  - name: r\n    tasks:\n{tasks}    fallback_models: [a2, b1]\n")
}

fn lint_router(tasks: &[(&str, &str)]) -> Vec<Finding> {
    let config = config(&router(tasks), &[("KEY_B", "k")]);
    lint(&config, Some(encoder()), &LintOptions::default())
        .unwrap()
        .findings
}

fn of(findings: &[Finding], check: Check) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|finding| finding.check == check)
        .collect()
}

const SUMMARIES: (&str, &str) = (
    "summarization",
    "Summaries of articles, documents, meeting notes, transcripts and long texts",
);
const MATHEMATICS: (&str, &str) = (
    "mathematics",
    "Mathematics - arithmetic, algebra, calculus, statistics, equations and proofs",
);

#[test]
fn the_embedded_default_has_no_errors_and_no_overlap() {
    let config = Config::embedded_default(&HashMap::new()).unwrap();
    let report = lint(&config, Some(encoder()), &LintOptions::default()).unwrap();
    println!("{}", report.to_text());
    assert!(!report.has_errors(), "{}", report.to_text());
    let descriptive: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|finding| finding.check != Check::FallbackNotIndependent)
        .collect();
    assert!(descriptive.is_empty(), "{}", report.to_text());
}

#[test]
fn near_identical_descriptions_overlap_as_an_error_naming_both() {
    let findings = lint_router(&[
        ("bug_fixing", "Fix bugs and errors in code"),
        ("debugging", "Debug errors and bugs in programs"),
        SUMMARIES,
    ]);
    let overlaps = of(&findings, Check::Overlap);
    assert_eq!(overlaps.len(), 1, "{findings:#?}");
    let overlap = overlaps[0];
    assert_eq!(overlap.severity, Severity::Error);
    assert_eq!(
        (overlap.task.as_deref(), overlap.other_task.as_deref()),
        (Some("bug_fixing"), Some("debugging"))
    );
    let score = overlap.score.unwrap();
    assert!((0.70..0.80).contains(&score), "measured 0.738, got {score}");
    assert!(
        overlap.message.contains("bug_fixing") && overlap.message.contains("debugging"),
        "{}",
        overlap.message
    );

    let raised = LintOptions {
        overlap_threshold: 0.9,
        ..LintOptions::default()
    };
    let config = config(
        &router(&[
            ("bug_fixing", "Fix bugs and errors in code"),
            ("debugging", "Debug errors and bugs in programs"),
        ]),
        &[("KEY_B", "k")],
    );
    let report = lint(&config, Some(encoder()), &raised).unwrap();
    assert!(!report.has_errors(), "{}", report.to_text());
    assert_eq!(
        of(&report.findings, Check::Overlap)[0].severity,
        Severity::Warning,
        "between 0.60 and the raised 0.9"
    );
}

#[test]
fn a_description_of_another_task_is_a_name_mismatch() {
    let findings = lint_router(&[
        ("translation", "Write poems and short stories"),
        SUMMARIES,
        MATHEMATICS,
    ]);
    let mismatches = of(&findings, Check::NameMismatch);
    assert_eq!(mismatches.len(), 1, "{findings:#?}");
    assert_eq!(mismatches[0].task.as_deref(), Some("translation"));
    assert!(
        mismatches[0].message.contains("(translation)"),
        "{}",
        mismatches[0].message
    );

    // Swapped names read as each other's description by a clear margin.
    let findings = lint_router(&[
        ("translation", "Write poems and short stories"),
        (
            "poetry",
            "Translation of text between languages - French, Spanish, German, Japanese",
        ),
        SUMMARIES,
    ]);
    let translation = of(&findings, Check::NameMismatch)
        .into_iter()
        .find(|finding| finding.task.as_deref() == Some("translation"))
        .expect("translation flagged");
    assert_eq!(translation.severity, Severity::Error, "{translation:#?}");
    assert_eq!(translation.other_task.as_deref(), Some("poetry"));

    // Named in other words (debugging / bugs) is no mismatch.
    let findings = lint_router(&[
        (
            "debugging",
            "Bugs, errors, exceptions, stack traces and crashes - diagnosis and fixes",
        ),
        SUMMARIES,
        MATHEMATICS,
    ]);
    assert!(
        of(&findings, Check::NameMismatch).is_empty(),
        "{findings:#?}"
    );
}

#[test]
fn an_adjective_heavy_description_is_a_warning() {
    let findings = lint_router(&[
        (
            "expert_answers",
            "Fast, smart, high quality answers to complex and advanced questions",
        ),
        SUMMARIES,
        MATHEMATICS,
    ]);
    let adjectives = of(&findings, Check::Adjectives);
    assert_eq!(adjectives.len(), 1, "{findings:#?}");
    assert_eq!(adjectives[0].severity, Severity::Warning);
    assert_eq!(adjectives[0].task.as_deref(), Some("expert_answers"));
    assert!(
        adjectives[0]
            .message
            .contains("fast, smart, high, quality, complex, advanced"),
        "{}",
        adjectives[0].message
    );
}

#[test]
fn a_fallback_pool_without_a_key_is_an_error() {
    let routers = "  - name: r
    tasks:
      - { name: summarization, description: \"Summaries of articles, documents and long texts\", models: [a1, b1] }
    fallback_models: [b1, b2]
";
    let unkeyed = config(routers, &[]);
    let report = lint(&unkeyed, None, &LintOptions::default()).unwrap();
    assert!(report.has_errors(), "{}", report.to_text());
    let empty = of(&report.findings, Check::EmptyFallback);
    assert_eq!(empty.len(), 1, "{}", report.to_text());
    assert_eq!(empty[0].severity, Severity::Error);
    assert_eq!(
        (empty[0].router.as_str(), empty[0].task.as_deref()),
        ("r", None)
    );
    assert!(
        empty[0].message.contains("KEY_B not set"),
        "{}",
        empty[0].message
    );

    let keyed = config(routers, &[("KEY_B", "k")]);
    let report = lint(&keyed, None, &LintOptions::default()).unwrap();
    assert!(!report.has_errors(), "{}", report.to_text());
    let thin = of(&report.findings, Check::ThinFallback);
    assert_eq!(
        thin.len(),
        1,
        "both fallback models are on provider b: {}",
        report.to_text()
    );
}

#[test]
fn fallback_models_inside_a_task_pool_and_unservable_pools_are_warnings() {
    let routers = "  - name: r
    tasks:
      - { name: summarization, description: \"Summaries of articles, documents and long texts\", models: [a1, b1] }
      - { name: mathematics, description: \"Mathematics - arithmetic, algebra, calculus, equations and proofs\", models: [b2] }
    fallback_models: [a1, b1]
";
    let report = lint(&config(routers, &[]), None, &LintOptions::default()).unwrap();
    let checks: Vec<(Severity, Check, Option<&str>)> = report
        .findings
        .iter()
        .map(|finding| (finding.severity, finding.check, finding.task.as_deref()))
        .collect();
    assert_eq!(
        checks,
        [
            (Severity::Warning, Check::OverlapNotChecked, None),
            (
                Severity::Warning,
                Check::UnavailablePool,
                Some("mathematics")
            ),
            (Severity::Warning, Check::ThinFallback, None),
            (Severity::Warning, Check::FallbackNotIndependent, None),
        ],
        "{}",
        report.to_text()
    );
    assert!(
        report.findings[3].message.contains("`summarization`"),
        "{}",
        report.to_text()
    );
}

#[test]
fn bad_options_are_refused() {
    let config = config(&router(&[SUMMARIES]), &[]);
    let options = LintOptions {
        overlap_threshold: 1.5,
        ..LintOptions::default()
    };
    let err = lint(&config, None, &options).unwrap_err();
    assert!(err.to_string().contains("overlap_threshold"), "{err}");
}
