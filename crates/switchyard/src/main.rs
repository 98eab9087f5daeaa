//! `switchyard`: the router's command line.
//!
//! - `switchyard serve [--config FILE]` starts a node (the embedded default
//!   config without `--config`).
//! - `switchyard eval --dataset FILE.jsonl` measures routing accuracy.
//!
//! Thin by design: parsing arguments and the environment, then one call
//! into `switchyard_node` or `switchyard_eval`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_config::Config;

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "An OpenAI-compatible LLM router")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a router node.
    Serve {
        /// YAML config file; the embedded single-node default without it.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Override `server.listen` (e.g. 0.0.0.0:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Override `server.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the effective embedded default config and exit.
        #[arg(long)]
        print_default_config: bool,
    },
    /// Measure routing accuracy on a dataset in the shared JSONL format.
    Eval {
        /// JSONL file: one routing decision per line.
        #[arg(long)]
        dataset: PathBuf,
        /// Classifier to evaluate.
        #[arg(long, default_value = "lexical")]
        classifier: String,
        /// Score below which the answer is `other` (classifier's default if unset).
        #[arg(long)]
        other_threshold: Option<f32>,
        /// Evaluate only the first N lines.
        #[arg(long)]
        limit: Option<usize>,
        /// Encoder files for the `embedding` classifier.
        #[arg(long, default_value = switchyard_encoder::DEFAULT_MODEL_DIR)]
        model_dir: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on Ctrl-C or SIGTERM (what orchestrators send), whichever first.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let env = switchyard_node::process_env();
    let mut config = match &config_path {
        Some(path) => Config::from_file(path, &env)?,
        None => Config::embedded_default(&env)?,
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(data_dir) = data_dir {
        config.server.data_dir = data_dir;
    }
    match &config_path {
        Some(path) => tracing::info!(config = %path.display(), "config loaded"),
        None => tracing::info!("no --config given: using the embedded default config"),
    }
    switchyard_node::run(config, shutdown_signal()).await?;
    Ok(())
}

fn eval(
    dataset: PathBuf,
    classifier: &str,
    other_threshold: Option<f32>,
    limit: Option<usize>,
    model_dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let mut spec = switchyard_classifier::ClassifierSpec::new(classifier, other_threshold);
    if let Some(model_dir) = model_dir {
        spec.encoder.model_dir = model_dir;
    }
    let classifier = switchyard_classifier::build(&spec)?;
    let cases = switchyard_eval::read_cases(&dataset, limit)?;
    let bar = indicatif::ProgressBar::new(cases.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} cases ({per_sec}, eta {eta})",
        )
        .context("progress bar template")?,
    );
    let report = switchyard_eval::evaluate(classifier.as_ref(), &cases, || bar.inc(1))?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve {
            print_default_config: true,
            ..
        } => {
            print!("{}", switchyard_config::DEFAULT_CONFIG_YAML);
            Ok(())
        }
        Command::Serve {
            config,
            listen,
            data_dir,
            ..
        } => serve(config, listen, data_dir).await,
        Command::Eval {
            dataset,
            classifier,
            other_threshold,
            limit,
            model_dir,
            json,
        } => tokio::task::spawn_blocking(move || {
            eval(dataset, &classifier, other_threshold, limit, model_dir, json)
        })
        .await
        .context("the evaluation task failed")?,
    }
}
