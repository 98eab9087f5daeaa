//! `switchyard lint --config FILE`: checks a config's routers for task
//! descriptions that will route badly, and for fallback pools that cannot
//! serve, before they take traffic.
//!
//! Sits beside the request path, not on it: the CLI loads a validated
//! [`Config`], optionally the sentence encoder the classifiers use
//! ([`load_encoder`]), and calls [`lint`]. The [`Report`] lists
//! [`Finding`]s, each naming its router (and task), rendered as a table
//! ([`Report::to_text`]) or JSON ([`Report::to_json`]); the CLI exits
//! non-zero when [`Report::has_errors`].
//!
//! # Layout
//! - [`words`]: word heuristics (stems, stopwords, vague qualifiers) as
//!   plain functions.
//! - `descriptions`: checks on each description's words: too short,
//!   adjective-heavy, duplicated, name not found in it.
//! - `semantic`: checks in the encoder's space: descriptions that overlap,
//!   names that read as another task's description.
//! - `fallback`: fallback pools that no provider can serve, or that add
//!   nothing to a task's own pool.
//! - `report`: rendering.

mod descriptions;
mod fallback;
mod report;
mod semantic;
pub mod words;

use std::path::Path;

use switchyard_config::{Config, Router};
use switchyard_encoder::{Device, Encoder, EncoderError, EncoderSettings};

pub use report::Report;

/// Why linting could not run (a finding is not an error here: it is data).
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("lint needs the sentence encoder: {0}")]
    Encoder(#[from] EncoderError),
    #[error("lint option {option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
}

/// How serious a finding is: errors fail `switchyard lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Which check made a finding (its `as_str` is the name in text and JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Two descriptions of one router are close in the encoder's space.
    Overlap,
    /// No encoder was given: overlap was not measured.
    OverlapNotChecked,
    /// Two descriptions of one router are the same words.
    DuplicateDescription,
    /// The task's name does not describe what its description says.
    NameMismatch,
    /// The description is mostly vague qualifiers.
    Adjectives,
    /// The description has too few content words to place it.
    ShortDescription,
    /// No fallback model has a provider that can serve it.
    EmptyFallback,
    /// The fallback rests on one model or one provider.
    ThinFallback,
    /// Some tasks' pools already hold every fallback model.
    FallbackNotIndependent,
    /// No model of a task's pool can be served: only the fallback serves it.
    UnavailablePool,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Overlap => "overlap",
            Check::OverlapNotChecked => "overlap_not_checked",
            Check::DuplicateDescription => "duplicate_description",
            Check::NameMismatch => "name_mismatch",
            Check::Adjectives => "adjectives",
            Check::ShortDescription => "short_description",
            Check::EmptyFallback => "empty_fallback",
            Check::ThinFallback => "thin_fallback",
            Check::FallbackNotIndependent => "fallback_not_independent",
            Check::UnavailablePool => "unavailable_pool",
        }
    }
}

/// One thing wrong with a router.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub router: String,
    /// `None` for findings about the router as a whole (its fallback pool).
    pub task: Option<String>,
    pub check: Check,
    /// What was seen and why it matters, for a person.
    pub message: String,
    /// The measured similarity, for checks that measure one.
    pub score: Option<f32>,
    /// The task this one collides with (overlap, duplicate, name mismatch).
    pub other_task: Option<String>,
}

impl Finding {
    fn new(severity: Severity, router: &Router, check: Check, message: String) -> Finding {
        Finding {
            severity,
            router: router.name.clone(),
            task: None,
            check,
            message,
            score: None,
            other_task: None,
        }
    }

    fn task(mut self, task: &str) -> Finding {
        self.task = Some(task.to_owned());
        self
    }

    fn other(mut self, other: &str) -> Finding {
        self.other_task = Some(other.to_owned());
        self
    }

    fn score(mut self, score: f32) -> Finding {
        self.score = Some(score);
        self
    }
}

/// Overlap error threshold: cosine of two descriptions' all-MiniLM-L6-v2
/// embeddings (what the `embedding` and `moe` classifiers compare).
///
/// Measured: the embedded default config's closest pair is
/// `code_generation`/`code_explanation` at 0.550 (no other pair over 0.50);
/// over the routing corpus (65 route sets written with deliberate
/// near-neighbour routes, 15,996 pairs of descriptions of different
/// routes) p99 is 0.60 and p99.9 0.74; two rewordings of one task ("Fix
/// bugs and errors in code" / "Debug errors and bugs in programs") score
/// 0.738, and the corpus's own paraphrases of one route have a median of
/// only 0.48. This encoder rarely puts even paraphrases above 0.8, so 0.8
/// would catch almost nothing; 0.70 catches the rewording with a 0.04
/// margin and leaves the default config 0.15 below it.
pub const DEFAULT_OVERLAP_ERROR: f32 = 0.70;

/// Overlap warning threshold: the 99th percentile of different-route pairs
/// in the corpus (0.60), 0.05 above the default config's closest pair.
pub const DEFAULT_OVERLAP_WARNING: f32 = 0.60;

/// What counts as a problem. [`Default`] holds the measured defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LintOptions {
    /// Cosine at or above which two descriptions of one router are an
    /// error (`--threshold`).
    pub overlap_threshold: f32,
    /// Cosine at or above which they are a warning; taken as at most
    /// `overlap_threshold`, so raising or lowering `--threshold` alone
    /// never inverts the two.
    pub overlap_warning: f32,
    /// A name that shares no word with its description and reads closer
    /// (cosine of the humanized name's embedding) to another task's
    /// description than to its own, by at least this much, is a warning.
    /// Over the corpus's 1,689 tasks (every description variant of its 65
    /// route sets) 142 names read closer to another description at all,
    /// half of them by under 0.084: noise. 0.10 leaves 59 (3.5%).
    pub name_warning_margin: f32,
    /// ... and by at least this much, an error: 5 corpus tasks (0.3%),
    /// while a swapped pair (`translation` described as poems, `poetry` as
    /// translation) is far over it.
    pub name_error_margin: f32,
    /// A name that shares no word with its description and sits less than
    /// this close to it is a warning even when no other task is closer (a
    /// router of one task). `translation` against "Write poems and short
    /// stories" scores 0.124; corpus names without a word in their
    /// description mostly sit well above (at 0.20 the floor alone warned
    /// on 2% of corpus tasks, names like `human_handoff` for "wants a real
    /// person").
    pub name_floor: f32,
    /// Share of a description's content words that may be vague
    /// qualifiers ([`words::VAGUE_WORDS`]) before it is a warning (with at
    /// least two of them).
    pub adjective_ratio: f32,
    /// Fewest content words (not stopwords) a description should have.
    pub min_content_words: usize,
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions {
            overlap_threshold: DEFAULT_OVERLAP_ERROR,
            overlap_warning: DEFAULT_OVERLAP_WARNING,
            name_warning_margin: 0.10,
            name_error_margin: 0.30,
            name_floor: 0.15,
            adjective_ratio: 0.40,
            min_content_words: 4,
        }
    }
}

impl LintOptions {
    fn check(&self) -> Result<(), LintError> {
        let cosine = |option: &'static str, value: f32| {
            if (-1.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(LintError::Option {
                    option,
                    message: format!("{value} is not a cosine similarity (-1 to 1)"),
                })
            }
        };
        cosine("overlap_threshold", self.overlap_threshold)?;
        cosine("overlap_warning", self.overlap_warning)?;
        cosine("name_floor", self.name_floor)?;
        for (option, margin) in [
            ("name_warning_margin", self.name_warning_margin),
            ("name_error_margin", self.name_error_margin),
        ] {
            if !(0.0..=2.0).contains(&margin) {
                return Err(LintError::Option {
                    option,
                    message: format!("{margin} is not a difference of cosines (0 to 2)"),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.adjective_ratio) {
            return Err(LintError::Option {
                option: "adjective_ratio",
                message: format!("{} is not a share (0 to 1)", self.adjective_ratio),
            });
        }
        Ok(())
    }
}

/// Loads the sentence encoder from `model_dir` (the config's
/// `classifier.model_dir`, where `models/fetch.sh` puts it), on the CPU
/// whatever the config's backend: lint embeds a few dozen texts.
pub fn load_encoder(model_dir: &Path) -> Result<Encoder, LintError> {
    Ok(Encoder::load(&EncoderSettings {
        model_dir: model_dir.to_path_buf(),
        device: Device::Cpu,
        ..EncoderSettings::default()
    })?)
}

/// Lints every router in force in `config`. Without an `encoder` the
/// checks that need it are skipped, each router saying so in a warning.
/// Which fallback models can be served depends on the environment the
/// config was loaded with (API keys). Blocking: it runs the encoder.
pub fn lint(
    config: &Config,
    encoder: Option<&Encoder>,
    options: &LintOptions,
) -> Result<Report, LintError> {
    options.check()?;
    let mut findings = Vec::new();
    for router in &config.routers {
        let described = descriptions::check(router, options);
        let semantic = match encoder {
            Some(encoder) => semantic::check(router, encoder, options, &described)?,
            None => semantic::skipped(router, &described),
        };
        findings.extend(described.findings);
        findings.extend(semantic);
        findings.extend(fallback::check(config, router));
    }
    Ok(Report { findings })
}
