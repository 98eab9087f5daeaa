//! The official Python SDKs as real clients of a running node: `openai`
//! (chat completions, streaming, tool calls, errors as the SDK's exception
//! types) and `anthropic` (messages, streaming, tool use, errors), over
//! upstreams of all three kinds. The scripts are in `tests/sdk/`; the SDKs
//! are installed from PyPI into `tests/.venv` by `tests/setup.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::path::PathBuf;

use switchyard_mock::MockConfig;
use switchyard_tests::{PROVIDERS_CONFIG, Sandbox, TEST_KEY};

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(venv.is_file(), "{} is missing: run tests/setup.sh (it installs the SDKs from PyPI)", venv.display());
    venv
}

async fn run_script(script: &str) {
    let sandbox = Sandbox::start_with(PROVIDERS_CONFIG, MockConfig::default()).await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk").join(script);
    let output = tokio::process::Command::new(python())
        .arg(&path)
        .arg(sandbox.node.base_url())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains(TEST_KEY) && !stderr.contains(TEST_KEY), "the provider key reached a client");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_unchanged() {
    run_script("openai_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_works_unchanged() {
    run_script("anthropic_client.py").await;
}
