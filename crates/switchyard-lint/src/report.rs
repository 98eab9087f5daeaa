//! The findings, rendered for people (a table) and for scripts (JSON).

use serde_json::{Value, json};

use crate::{Finding, Severity};

/// Everything [`crate::lint`] found, routers in config order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when any finding is an error: `switchyard lint` then exits
    /// non-zero.
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    }

    /// "2 errors, 3 warnings".
    pub fn summary(&self) -> String {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        format!(
            "{}, {}",
            plural(self.count(Severity::Error), "error"),
            plural(self.count(Severity::Warning), "warning")
        )
    }

    /// One line per finding under its router's name, then the summary:
    ///
    /// ```text
    /// router writing
    ///   error    translation      name_mismatch  none of the name's words ...
    /// 1 error, 0 warnings
    /// ```
    pub fn to_text(&self) -> String {
        let subject = |finding: &Finding| match (&finding.task, &finding.other_task) {
            (Some(task), Some(other)) => format!("{task} ~ {other}"),
            (Some(task), None) => task.clone(),
            (None, _) => "(router)".to_owned(),
        };
        let subject_width = self
            .findings
            .iter()
            .map(|f| subject(f).len())
            .max()
            .unwrap_or(0);
        let check_width = self
            .findings
            .iter()
            .map(|f| f.check.as_str().len())
            .max()
            .unwrap_or(0);
        let mut text = String::new();
        let mut router: Option<&str> = None;
        for finding in &self.findings {
            if router != Some(finding.router.as_str()) {
                router = Some(finding.router.as_str());
                text.push_str(&format!("router {}\n", finding.router));
            }
            text.push_str(&format!(
                "  {:<8} {:<subject_width$}  {:<check_width$}  {}\n",
                finding.severity.as_str(),
                subject(finding),
                finding.check.as_str(),
                finding.message
            ));
        }
        text.push_str(&self.summary());
        text.push('\n');
        text
    }

    /// `{"errors": n, "warnings": n, "findings": [{severity, router, task,
    /// check, message, score, other_task}]}`; absent values are `null`,
    /// scores rounded to 3 decimals.
    pub fn to_json(&self) -> Value {
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|finding| {
                json!({
                    "severity": finding.severity.as_str(),
                    "router": finding.router,
                    "task": finding.task,
                    "check": finding.check.as_str(),
                    "message": finding.message,
                    "score": finding.score.map(|score| (f64::from(score) * 1000.0).round() / 1000.0),
                    "other_task": finding.other_task,
                })
            })
            .collect();
        json!({
            "errors": self.count(Severity::Error),
            "warnings": self.count(Severity::Warning),
            "findings": findings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Check;

    fn finding(severity: Severity, router: &str, task: Option<&str>, check: Check) -> Finding {
        Finding {
            severity,
            router: router.to_owned(),
            task: task.map(str::to_owned),
            check,
            message: "m".to_owned(),
            score: None,
            other_task: None,
        }
    }

    #[test]
    fn text_groups_by_router_and_counts() {
        let mut overlap = finding(Severity::Error, "a", Some("x"), Check::Overlap);
        overlap.other_task = Some("y".to_owned());
        overlap.score = Some(0.73812);
        let report = Report {
            findings: vec![
                overlap,
                finding(Severity::Warning, "a", Some("y"), Check::Adjectives),
                finding(Severity::Error, "b", None, Check::EmptyFallback),
            ],
        };
        assert!(report.has_errors());
        let text = report.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(lines[0], "router a");
        assert!(
            lines[1].starts_with("  error    x ~ y     overlap"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("  warning  y         adjectives"),
            "{text}"
        );
        assert_eq!(lines[3], "router b");
        assert!(
            lines[4].contains("(router)") && lines[4].contains("empty_fallback"),
            "{text}"
        );
        assert_eq!(lines[5], "2 errors, 1 warning");
        let json = report.to_json();
        assert_eq!(json["errors"], 2);
        assert_eq!(json["findings"][0]["score"], 0.738);
        assert_eq!(json["findings"][0]["other_task"], "y");
        assert_eq!(json["findings"][2]["task"], Value::Null);
        assert!(!Report::default().has_errors());
        assert_eq!(Report::default().to_text(), "0 errors, 0 warnings\n");
    }
}
