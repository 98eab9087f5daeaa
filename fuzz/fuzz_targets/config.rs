//! Config loading from YAML text: a file on its own (`Config::from_yaml`)
//! and a layer over a base (`Config::from_layers`, as a node's file over a
//! shared one). Arbitrary text may be refused, never panic. The environment
//! is a fixed map (no process environment), so runs are reproducible.
//!
//! The base is small: parsing the 9 KB embedded default on every run made
//! the target four times slower, and the default is a seed of `from_yaml`.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchyard_config::Config;

/// The shared base that each input is laid over.
const BASE: &str = r#"
providers:
  - { name: p, kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: OPENAI_API_KEY }
  - { name: a, kind: anthropic, base_url: "https://api.anthropic.com/v1", api_key_env: ANTHROPIC_API_KEY }
models:
  - { id: m1, provider: p, price: { input: 1, output: 2 } }
  - { id: m2, provider: a, price: { input: 3, output: 15 }, aliases: [two] }
routers:
  - name: r
    tasks:
      - { name: code, description: "Writing, fixing and reviewing code", models: [m1, two] }
    fallback_models: [m1]
server: { listen: 127.0.0.1:8080 }
"#;

fn env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        [
            ("OPENAI_API_KEY", "sk-fuzz-openai-0123456789abcdef"),
            ("ANTHROPIC_API_KEY", "sk-ant-fuzz-0123456789abcdef"),
            ("GEMINI_API_KEY", "fuzz-gemini-0123456789abcdef"),
            ("SHORT", "short"),
            ("LONG", "a-long-enough-key-0123456789"),
            ("PAIRS", "a=sk-team-a-0123456789abcdef, b=sk-team-b-0123456789abcdef"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    static BASE_IS_VALID: OnceLock<()> = OnceLock::new();
    BASE_IS_VALID.get_or_init(|| {
        if let Err(err) = Config::from_yaml(BASE, env()) {
            panic!("the harness's BASE config no longer validates (update fuzz/fuzz_targets/config.rs): {err}");
        }
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_yaml(text, env()) {
        let _ = format!("{config:?}");
    }
    if let Ok(config) = Config::from_layers(&[BASE, text], env()) {
        let _ = format!("{config:?}");
    }
});
