//! `switchyard-mock`: run the fake upstream (OpenAI, Anthropic and Gemini
//! APIs) from the command line, for trying the router without API keys or
//! poking at failure handling by hand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchyard_mock::{Failure, MockConfig, MockServer};
use tracing_subscriber::EnvFilter;

/// A fake OpenAI, Anthropic and Gemini upstream with failure injection.
#[derive(Debug, Parser)]
#[command(name = "switchyard-mock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Delay before the first byte of an answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Pace of streamed words; 0 sends them as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    tokens_per_sec: f64,
    /// Label shown in answers, e.g. `demo`.
    #[arg(long)]
    label: Option<String>,
    /// Completion length in words when a request sets no max_tokens.
    #[arg(long, default_value_t = 12)]
    completion_words: usize,
    /// Inject a failure for a model: MODEL=500, MODEL=hang, MODEL=drop:3; add @N to fail
    /// only every Nth request (MODEL=429@2, MODEL=drop:2@4). Repeatable.
    #[arg(long = "fail", value_name = "MODEL=SPEC", value_parser = parse_fail)]
    fail: Vec<(String, Failure)>,
}

fn parse_fail(arg: &str) -> Result<(String, Failure), String> {
    // Split at the last `=`: specs never contain one, model names might.
    let (model, spec) = arg
        .rsplit_once('=')
        .ok_or_else(|| format!("expected MODEL=SPEC, got `{arg}`"))?;
    Ok((model.to_owned(), spec.parse()?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr so stdout carries only the "listening" line for scripts.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = MockConfig {
        ttft: Duration::from_millis(args.ttft_ms),
        tokens_per_sec: args.tokens_per_sec,
        label: args.label,
        failures: args.fail.into_iter().collect::<HashMap<_, _>>(),
        completion_words: args.completion_words,
    };
    let server = MockServer::start(args.listen, config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("switchyard-mock listening on {}", server.base_url());

    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
