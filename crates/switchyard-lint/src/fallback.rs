//! Checks on what a router can serve with: the validated config never has
//! an empty fallback list, but one whose providers all lack a key serves
//! nothing, and one inside every task's pool adds nothing.

use switchyard_config::{Config, Router};

use crate::{Check, Finding, Severity};

/// Why `model` cannot be served, or `None` when it can: its provider has
/// a key, needs none, or a demo upstream stands in for it.
fn unservable(config: &Config, model: &str) -> Option<String> {
    let Some(model) = config.model(model) else {
        return Some(format!("{model} (unknown model)"));
    };
    match config.provider(&model.provider) {
        Some(provider) if provider.available || provider.demo => None,
        Some(provider) => Some(format!(
            "{} ({}: {} not set)",
            model.id,
            provider.name,
            provider.api_key_env.as_deref().unwrap_or("no key")
        )),
        None => Some(format!(
            "{} (unknown provider `{}`)",
            model.id, model.provider
        )),
    }
}

/// The servable models of `pool`, canonical ids.
fn servable<'a>(config: &Config, pool: &'a [String]) -> Vec<&'a str> {
    pool.iter()
        .map(String::as_str)
        .filter(|model| unservable(config, model).is_none())
        .collect()
}

pub(crate) fn check(config: &Config, router: &Router) -> Vec<Finding> {
    let mut findings = Vec::new();
    for task in &router.tasks {
        if servable(config, &task.models).is_empty() {
            let why: Vec<String> = task
                .models
                .iter()
                .filter_map(|model| unservable(config, model))
                .collect();
            findings.push(
                Finding::new(
                    Severity::Warning,
                    router,
                    Check::UnavailablePool,
                    format!(
                        "no model of its pool can be served ({}): its requests go straight to the fallback models",
                        why.join(", ")
                    ),
                )
                .task(&task.name),
            );
        }
    }
    let fallback = servable(config, &router.fallback_models);
    if fallback.is_empty() {
        let why: Vec<String> = router
            .fallback_models
            .iter()
            .filter_map(|model| unservable(config, model))
            .collect();
        findings.push(Finding::new(
            Severity::Error,
            router,
            Check::EmptyFallback,
            format!(
                "the fallback pool is empty in effect: no model can be served ({}); `other` requests, and tasks whose pool fails, get no answer",
                why.join(", ")
            ),
        ));
        return findings;
    }
    let providers = {
        let mut providers: Vec<&str> = fallback
            .iter()
            .filter_map(|model| config.model(model).map(|model| model.provider.as_str()))
            .collect();
        providers.sort_unstable();
        providers.dedup();
        providers
    };
    if fallback.len() == 1 {
        findings.push(Finding::new(
            Severity::Warning,
            router,
            Check::ThinFallback,
            format!(
                "the fallback pool has one servable model ({}): if it fails, `other` requests get no answer",
                fallback.join(", ")
            ),
        ));
    } else if let [provider] = providers.as_slice() {
        findings.push(Finding::new(
            Severity::Warning,
            router,
            Check::ThinFallback,
            format!(
                "every servable fallback model ({}) is on provider `{provider}`: one outage leaves `other` requests with no answer",
                fallback.join(", ")
            ),
        ));
    }
    let covered: Vec<&str> = router
        .tasks
        .iter()
        .filter(|task| {
            fallback
                .iter()
                .all(|model| task.models.iter().any(|m| m == model))
        })
        .map(|task| task.name.as_str())
        .collect();
    if !covered.is_empty() {
        let (pools, hold) = if covered.len() == 1 {
            ("pool", "holds")
        } else {
            ("pools", "hold")
        };
        let tasks: Vec<String> = covered.iter().map(|task| format!("`{task}`")).collect();
        findings.push(Finding::new(
            Severity::Warning,
            router,
            Check::FallbackNotIndependent,
            format!(
                "the {pools} of {} already {hold} every servable fallback model ({}): when such a pool fails there is no other model to try; add a fallback model from outside it",
                tasks.join(", "),
                fallback.join(", ")
            ),
        ));
    }
    findings
}
