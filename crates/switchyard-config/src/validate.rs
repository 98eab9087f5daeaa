//! Raw file → validated [`Config`]: references, uniqueness, environment.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_types::OTHER_ROUTE;

use crate::ConfigError;
use crate::model::{
    AffinityConfig, ClassifierConfig, Config, DemoMode, DispatchConfig, Model, Price, Provider,
    ProviderKind, Router, Secret, SelectionPolicy, ServerConfig, Task,
};
use crate::raw::{RawConfig, RawModel, RawPrice, RawProvider, RawRouter};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
const DEFAULT_AFFINITY_TTL_SECS: u64 = 3600;
const DEFAULT_MAX_SESSIONS: usize = 100_000;

pub(crate) fn validate(
    raw: RawConfig,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let server = server(&raw)?;
    let demo = match raw.demo.as_deref() {
        None | Some("auto") => DemoMode::Auto,
        Some("on") => DemoMode::On,
        Some("off") => DemoMode::Off,
        Some(other) => {
            return Err(ConfigError::invalid(
                "demo",
                format!("unknown value `{other}`; expected auto, on or off"),
            ));
        }
    };
    let mut providers = providers(&raw.providers, env)?;
    let demo_active = match demo {
        DemoMode::On => true,
        DemoMode::Off => false,
        DemoMode::Auto => providers.iter().all(|provider| !provider.available),
    };
    if demo_active {
        for provider in &mut providers {
            provider.demo = true;
        }
    }
    let (models, model_names) = models(&raw.models, &providers)?;
    let routers = routers(&raw.routers, &models, &model_names)?;
    let classifier = classifier(&raw)?;
    let affinity = AffinityConfig {
        ttl: Duration::from_secs(positive(
            raw.affinity.ttl_secs,
            DEFAULT_AFFINITY_TTL_SECS,
            "affinity.ttl_secs",
        )?),
        max_sessions: positive(
            raw.affinity.max_sessions.map(|n| n as u64),
            DEFAULT_MAX_SESSIONS as u64,
            "affinity.max_sessions",
        )? as usize,
    };
    let dispatch = DispatchConfig {
        connect_timeout: Duration::from_millis(positive(
            raw.dispatch.connect_timeout_ms,
            5_000,
            "dispatch.connect_timeout_ms",
        )?),
        first_byte_timeout: Duration::from_millis(positive(
            raw.dispatch.first_byte_timeout_ms,
            120_000,
            "dispatch.first_byte_timeout_ms",
        )?),
        total_timeout: Duration::from_millis(positive(
            raw.dispatch.total_timeout_ms,
            600_000,
            "dispatch.total_timeout_ms",
        )?),
    };
    if dispatch.first_byte_timeout > dispatch.total_timeout {
        return Err(ConfigError::invalid(
            "dispatch.first_byte_timeout_ms",
            "must not exceed dispatch.total_timeout_ms",
        ));
    }
    Ok(Config {
        server,
        prices_as_of: raw.prices_as_of,
        demo,
        providers,
        models,
        routers,
        classifier,
        affinity,
        dispatch,
        model_names,
    })
}

fn positive(value: Option<u64>, default: u64, place: &str) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(place, "must be greater than 0")),
        Some(value) => Ok(value),
    }
}

fn server(raw: &RawConfig) -> Result<ServerConfig, ConfigError> {
    let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::invalid(
            "server.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        )
    })?;
    let max_body_bytes = positive(
        raw.server.max_body_bytes.map(|n| n as u64),
        DEFAULT_MAX_BODY_BYTES as u64,
        "server.max_body_bytes",
    )? as usize;
    Ok(ServerConfig {
        listen,
        data_dir: PathBuf::from(raw.server.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR)),
        max_body_bytes,
        shutdown_grace: Duration::from_secs(
            raw.server
                .shutdown_grace_secs
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
        ),
    })
}

fn check_name(place: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            place,
            format!("`{name}` must be non-empty and use only letters, digits and - _ . / :"),
        ))
    }
}

fn unique<'a>(seen: &mut HashSet<&'a str>, place: &str, name: &'a str) -> Result<(), ConfigError> {
    if seen.insert(name) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            place,
            format!("duplicate name `{name}`"),
        ))
    }
}

fn providers(
    raw: &[RawProvider],
    env: &HashMap<String, String>,
) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::invalid("providers", "at least one provider is required"));
    }
    let mut seen = HashSet::new();
    let mut providers = Vec::with_capacity(raw.len());
    for (index, provider) in raw.iter().enumerate() {
        let place = format!("providers[{index}]");
        check_name(&format!("{place}.name"), &provider.name)?;
        unique(&mut seen, &format!("{place}.name"), &provider.name)?;
        let kind = match provider.kind.as_str() {
            "openai" => ProviderKind::OpenAi,
            other => {
                return Err(ConfigError::invalid(
                    format!("{place}.kind"),
                    format!("unknown provider kind `{other}`; expected openai"),
                ));
            }
        };
        let base_url = provider.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                format!("{place}.base_url"),
                format!("`{}` must start with http:// or https://", provider.base_url),
            ));
        }
        let api_key = provider
            .api_key_env
            .as_ref()
            .and_then(|var| env.get(var))
            .filter(|value| !value.trim().is_empty())
            .map(|value| Secret::new(value.trim()));
        let available = provider.api_key_env.is_none() || api_key.is_some();
        providers.push(Provider {
            name: provider.name.clone(),
            kind,
            base_url,
            api_key_env: provider.api_key_env.clone(),
            api_key,
            available,
            demo: false,
        });
    }
    Ok(providers)
}

fn price(place: &str, raw: &RawPrice) -> Result<Price, ConfigError> {
    let valid = |value: f64| value.is_finite() && value >= 0.0;
    match (raw.input, raw.output, raw.hourly) {
        (Some(input), Some(output), None) if valid(input) && valid(output) => {
            Ok(Price::PerToken { input, output })
        }
        (None, None, Some(hourly)) if valid(hourly) => Ok(Price::Hourly {
            usd_per_hour: hourly,
        }),
        _ => Err(ConfigError::invalid(
            place,
            "give either `input` and `output` (USD per million tokens) or `hourly` (USD per hour), as non-negative numbers",
        )),
    }
}

fn models(
    raw: &[RawModel],
    providers: &[Provider],
) -> Result<(Vec<Model>, HashMap<String, usize>), ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::invalid("models", "at least one model is required"));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut models = Vec::with_capacity(raw.len());
    for (index, model) in raw.iter().enumerate() {
        let place = format!("models[{index}]");
        check_name(&format!("{place}.id"), &model.id)?;
        if model.id.starts_with("router:") {
            return Err(ConfigError::invalid(
                format!("{place}.id"),
                "must not start with `router:`, which names routers",
            ));
        }
        if !providers.iter().any(|provider| provider.name == model.provider) {
            return Err(ConfigError::invalid(
                format!("{place}.provider"),
                format!("unknown provider `{}`", model.provider),
            ));
        }
        let price = price(&format!("{place}.price"), &model.price)?;
        let all_names = std::iter::once((format!("{place}.id"), &model.id)).chain(
            model
                .aliases
                .iter()
                .enumerate()
                .map(|(i, alias)| (format!("{place}.aliases[{i}]"), alias)),
        );
        for (name_place, name) in all_names {
            check_name(&name_place, name)?;
            if names.insert(name.clone(), index).is_some() {
                return Err(ConfigError::invalid(
                    name_place,
                    format!("`{name}` is already a model id or alias"),
                ));
            }
        }
        models.push(Model {
            id: model.id.clone(),
            provider: model.provider.clone(),
            upstream: model.upstream.clone().unwrap_or_else(|| model.id.clone()),
            price,
            aliases: model.aliases.clone(),
        });
    }
    Ok((models, names))
}

/// Resolves a list of model ids or aliases to canonical ids, refusing
/// empty lists (when `required`), unknown names and repeats.
fn model_list(
    place: &str,
    names: &[String],
    models: &[Model],
    index: &HashMap<String, usize>,
    required: bool,
) -> Result<Vec<String>, ConfigError> {
    if required && names.is_empty() {
        return Err(ConfigError::invalid(place, "the model pool is empty"));
    }
    let mut ids = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let model = index
            .get(name)
            .and_then(|&m| models.get(m))
            .ok_or_else(|| {
                ConfigError::invalid(format!("{place}[{i}]"), format!("unknown model `{name}`"))
            })?;
        if ids.contains(&model.id) {
            return Err(ConfigError::invalid(
                format!("{place}[{i}]"),
                format!("model `{}` is listed twice", model.id),
            ));
        }
        ids.push(model.id.clone());
    }
    Ok(ids)
}

fn routers(
    raw: &[RawRouter],
    models: &[Model],
    index: &HashMap<String, usize>,
) -> Result<Vec<Router>, ConfigError> {
    let mut seen = HashSet::new();
    let mut routers = Vec::with_capacity(raw.len());
    for (r, router) in raw.iter().enumerate() {
        let place = format!("routers[{r}]");
        check_name(&format!("{place}.name"), &router.name)?;
        unique(&mut seen, &format!("{place}.name"), &router.name)?;
        if router.tasks.is_empty() {
            return Err(ConfigError::invalid(
                format!("{place}.tasks"),
                "a router needs at least one task",
            ));
        }
        let mut task_names = HashSet::new();
        let mut tasks = Vec::with_capacity(router.tasks.len());
        for (t, task) in router.tasks.iter().enumerate() {
            let task_place = format!("{place}.tasks[{t}]");
            check_name(&format!("{task_place}.name"), &task.name)?;
            if task.name == OTHER_ROUTE {
                return Err(ConfigError::invalid(
                    format!("{task_place}.name"),
                    "`other` is reserved for requests no task fits",
                ));
            }
            unique(&mut task_names, &format!("{task_place}.name"), &task.name)?;
            if task.description.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{task_place}.description"),
                    "must describe the task in plain language",
                ));
            }
            let policy = match task.selection_policy.as_deref() {
                None | Some("manual") => SelectionPolicy::Manual,
                Some("cheapest") => SelectionPolicy::Cheapest,
                Some("fastest") => SelectionPolicy::Fastest,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        format!("{task_place}.selection_policy"),
                        format!("unknown policy `{other}`; expected cheapest, fastest or manual"),
                    ));
                }
            };
            tasks.push(Task {
                name: task.name.clone(),
                description: task.description.trim().to_owned(),
                models: model_list(&format!("{task_place}.models"), &task.models, models, index, true)?,
                policy,
            });
        }
        routers.push(Router {
            name: router.name.clone(),
            description: router.description.clone(),
            tasks,
            fallback_models: model_list(
                &format!("{place}.fallback_models"),
                &router.fallback_models,
                models,
                index,
                true,
            )?,
        });
    }
    Ok(routers)
}

fn classifier(raw: &RawConfig) -> Result<ClassifierConfig, ConfigError> {
    let kind = raw.classifier.kind.clone().unwrap_or_else(|| "bm25".to_owned());
    if kind != "bm25" {
        return Err(ConfigError::invalid(
            "classifier.kind",
            format!("unknown classifier `{kind}`; expected bm25"),
        ));
    }
    let workers = positive(
        raw.classifier.workers.map(|n| n as u64),
        2,
        "classifier.workers",
    )? as usize;
    let other_threshold = raw.classifier.other_threshold;
    if other_threshold.is_some_and(|t| !t.is_finite() || t < 0.0) {
        return Err(ConfigError::invalid(
            "classifier.other_threshold",
            "must be a non-negative number",
        ));
    }
    Ok(ClassifierConfig {
        kind,
        workers,
        other_threshold,
    })
}
