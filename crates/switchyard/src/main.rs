//! `switchyard`: the router's command line.
//!
//! - `switchyard serve [--config FILE]` starts a node (the embedded default
//!   config without `--config`).
//! - `switchyard eval --dataset FILE.jsonl` measures routing accuracy.
//! - `switchyard train` trains the `moe` head.
//! - `switchyard cluster status|add|remove` inspects and changes a cluster
//!   through a node's admin API.
//! - `switchyard compare --dataset FILE --router NAME --baseline MODEL`
//!   compares the router with one model through a running node.
//! - `switchyard lint --config FILE` checks a config's task descriptions.
//!
//! Thin by design: parsing arguments and the environment, then one call
//! into `switchyard_node` or `switchyard_eval`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_config::Config;

/// mimalloc rather than the system allocator: a forward pass of the encoder
/// allocates and frees hundreds of tensors; with glibc's malloc a warm new
/// turn took 15-18 ms back to back, with mimalloc 10-13 ms (BENCHMARKS.md,
/// "Classifier figures").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// YAML laid over the config (the embedded default without
        /// `--config`), key by key; repeatable. A cluster node's file holds
        /// only its own settings: `--overlay cluster/local/node-1.yaml`.
        #[arg(long)]
        overlay: Vec<PathBuf>,
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
    Eval(EvalArgs),
    /// Train the `moe` classifier's head; writes it and its model card.
    Train(TrainArgs),
    /// Compare the router with one model: each prompt of a dataset goes
    /// through `router:<NAME>` and straight to the baseline model on a
    /// running node; per prompt and in total: route, model, latency,
    /// tokens, cost and the saving.
    Compare {
        /// JSONL in the shared format (only `messages` is needed; `id` and
        /// `expected` are used when present).
        #[arg(long)]
        dataset: PathBuf,
        /// The router (`eng` or `router:eng`).
        #[arg(long)]
        router: String,
        /// The model to compare with (id or alias).
        #[arg(long)]
        baseline: String,
        /// The node's HTTP address.
        #[arg(long, default_value = switchyard_eval::compare::DEFAULT_NODE)]
        node: String,
        /// Write one CSV row per prompt here.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Only the first N prompts.
        #[arg(long)]
        limit: Option<usize>,
        /// Prompts in flight at once.
        #[arg(long, default_value_t = switchyard_eval::compare::DEFAULT_CONCURRENCY)]
        concurrency: usize,
        /// Per-call timeout, seconds.
        #[arg(long, default_value_t = switchyard_eval::compare::DEFAULT_TIMEOUT.as_secs())]
        timeout_secs: u64,
        /// Client API key, sent as `Authorization: Bearer`.
        #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Also print one line per prompt.
        #[arg(long)]
        per_prompt: bool,
        /// Print the comparison as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Check a config's routers before they serve: overlapping task
    /// descriptions, names that do not match their description, vague
    /// descriptions, fallback pools that cannot serve. Exits 1 on errors.
    Lint {
        /// The YAML config to check (keys come from the environment, as
        /// for `serve`).
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// YAML laid over the config, as for `serve`; repeatable.
        #[arg(long)]
        overlay: Vec<PathBuf>,
        /// Cosine similarity of two descriptions of one router at or above
        /// which they are an error.
        #[arg(long, default_value_t = switchyard_lint::DEFAULT_OVERLAP_ERROR)]
        threshold: f32,
        /// Encoder files; the config's `classifier.model_dir` by default.
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or change a running cluster over a node's admin API.
    Cluster {
        /// Any node's HTTP address (membership changes reach the leader).
        #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
        node: String,
        /// The admin key (`auth.admin_key_env` or `auth.admin_key_sha256` on the nodes).
        #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", global = true, hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Print the SHA-256 of an API key read from standard input, for
    /// `auth.keys[].sha256` or `auth.admin_key_sha256`: the config then
    /// holds no usable key. With `--generate`, make a random key first and
    /// print both (the key once, to hand to its user).
    HashKey {
        /// Make a new random key (32 bytes, hex, `sk-` prefixed) instead of
        /// reading one.
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Print the node's view: role, leader, term, applied index, members.
    Status,
    /// Add a node (as a learner until it has caught up, then as a voter).
    Add {
        /// The new node's `cluster.node_id`.
        #[arg(long)]
        id: u64,
        /// Its internal gRPC address (`cluster.advertise` or `cluster.listen`).
        #[arg(long)]
        raft_addr: String,
        /// Its public HTTP address.
        #[arg(long)]
        http_addr: String,
    },
    /// Remove a node from the cluster.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// The shared datasets (sgd/, clinc150/, natinst/).
    #[arg(long, default_value = "../shared/datasets")]
    datasets: PathBuf,
    /// Our routing corpus.
    #[arg(long, default_value = switchyard_eval::corpus::DEFAULT_CORPUS_DIR)]
    corpus: PathBuf,
    /// Where the head and MODEL_CARD.md are written.
    #[arg(long, default_value = switchyard_classifier::moe::DEFAULT_HEAD_DIR)]
    out: PathBuf,
    /// Encoder files (`models/fetch.sh`).
    #[arg(long, default_value = switchyard_encoder::DEFAULT_MODEL_DIR)]
    model_dir: PathBuf,
    /// Encoder outputs cached across runs.
    #[arg(long, default_value = "models/cache/train-embeddings.bin")]
    store: PathBuf,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Experts per MoE layer.
    #[arg(long, default_value_t = 8)]
    experts: usize,
    /// Experts computed per token.
    #[arg(long, default_value_t = 2)]
    top_k: usize,
    /// Largest correction, in logits, the head may add to a route's
    /// similarity prior (larger: freer to overrule the cosine).
    #[arg(long, default_value_t = 2.0)]
    residual_bound: f64,
    /// SGD `train` decisions used (seeded subsample).
    #[arg(long, default_value_t = 6000)]
    sgd: usize,
    /// CLINC150 `train` decisions used.
    #[arg(long, default_value_t = 15100)]
    clinc: usize,
    /// Natural Instructions `train` decisions used.
    #[arg(long, default_value_t = 5000)]
    natinst: usize,
    /// Shared `dev` decisions per dataset used for model selection.
    #[arg(long, default_value_t = 1500)]
    dev_per_source: usize,
    /// Also train the dense twin and put the ablation in the model card.
    #[arg(long)]
    ablation: bool,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
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
    overlays: &[PathBuf],
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let env = switchyard_node::process_env();
    let read = |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()));
    let mut layers = vec![match &config_path {
        Some(path) => read(path)?,
        None => switchyard_config::DEFAULT_CONFIG_YAML.to_owned(),
    }];
    for overlay in overlays {
        layers.push(read(overlay)?);
    }
    let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
    let mut config = Config::from_layers(&layers, &env)?;
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(data_dir) = data_dir {
        config.server.data_dir = data_dir;
    }
    match &config_path {
        Some(path) => tracing::info!(config = %path.display(), overlays = overlays.len(), "config loaded"),
        None => tracing::info!(overlays = overlays.len(), "no --config given: using the embedded default config"),
    }
    switchyard_node::run(config, shutdown_signal()).await?;
    Ok(())
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    use switchyard_classifier::moe::MoeHeadConfig;
    let options = switchyard_train::TrainOptions {
        datasets: args.datasets,
        corpus: args.corpus,
        out: args.out,
        encoder_dir: args.model_dir,
        store: args.store,
        sizes: switchyard_train::Sizes {
            sgd: args.sgd,
            clinc: args.clinc,
            natinst: args.natinst,
            dev_per_source: args.dev_per_source,
        },
        head: MoeHeadConfig::new()
            .with_experts(args.experts)
            .with_top_k(args.top_k)
            .with_residual_bound(args.residual_bound),
        fit: switchyard_train::FitSettings {
            epochs: args.epochs,
            batch: args.batch,
            learning_rate: args.learning_rate,
            seed: args.seed,
        },
        ablation: args.ablation,
    };
    let summary = switchyard_train::run(options)?;
    println!(
        "head written to {} (best epoch {}, {:.1} min): dev-seen {:.2}%, dev-unseen {:.2}% (embedding {:.2}%)",
        summary.options.out.display(),
        summary.best_epoch + 1,
        summary.train_time.as_secs_f64() / 60.0,
        summary.dev_seen.moe.accuracy * 100.0,
        summary.dev_unseen.moe.accuracy * 100.0,
        summary.dev_unseen.embedding.accuracy * 100.0,
    );
    Ok(())
}

/// What `switchyard eval` measures, and with which files.
#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// JSONL file (one routing decision per line), or `corpus:<split>`
    /// for our corpus: `corpus:dev-unseen`, `corpus:dev-seen`.
    #[arg(long)]
    dataset: PathBuf,
    /// Classifier to evaluate; several, comma-separated
    /// (`moe,embedding,lexical`), are compared on the same cases.
    #[arg(long, default_value = "moe")]
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
    /// The trained head for the `moe` classifier.
    #[arg(long, default_value = switchyard_classifier::moe::DEFAULT_HEAD_DIR)]
    head_dir: PathBuf,
    /// How the CPU encoder multiplies: `int8` (the node's default) or
    /// `f32` (the published weights, as the head was trained on).
    #[arg(long, default_value = "int8")]
    precision: switchyard_encoder::Precision,
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let EvalArgs {
        dataset,
        classifier,
        other_threshold,
        limit,
        model_dir,
        head_dir,
        precision,
        json,
    } = args;
    let cases = switchyard_eval::read_spec(&dataset, limit)?;
    // Several classifiers (`moe,embedding`) share one encoder and its cache,
    // so each message is encoded once for all of them.
    let mut encoder = None;
    let mut reports = Vec::new();
    for name in classifier.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut spec = switchyard_classifier::ClassifierSpec::new(name, other_threshold);
        spec.head_dir = head_dir.clone();
        spec.encoder.precision = precision;
        // Room for every message of a large dataset, so a second classifier
        // finds the first one's embeddings.
        spec.encoder.cache_entries = 400_000;
        if let Some(model_dir) = &model_dir {
            spec.encoder.model_dir = model_dir.clone();
        }
        let classifier = switchyard_classifier::build_sharing(&spec, &mut encoder)?;
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
            reports.push(report);
        } else {
            print!("{}", report.to_text());
            println!();
        }
    }
    if json {
        match reports.as_slice() {
            [one] => println!("{}", serde_json::to_string_pretty(one)?),
            many => println!("{}", serde_json::to_string_pretty(many)?),
        }
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
            overlay,
            listen,
            data_dir,
            ..
        } => serve(config, &overlay, listen, data_dir).await,
        Command::Eval(args) => tokio::task::spawn_blocking(move || eval(args))
            .await
            .context("the evaluation task failed")?,
        Command::Train(args) => tokio::task::spawn_blocking(move || train(args))
            .await
            .context("the training task failed")?,
        Command::Cluster { node, token, action } => cluster(&node, token.as_deref(), action).await,
        Command::HashKey { generate } => hash_key(generate),
        Command::Lint {
            config,
            overlay,
            threshold,
            model_dir,
            json,
        } => {
            let env = switchyard_node::process_env();
            let read = |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()));
            let mut layers = vec![read(&config)?];
            for path in &overlay {
                layers.push(read(path)?);
            }
            let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
            let config = Config::from_layers(&layers, &env)?;
            let options = switchyard_lint::LintOptions {
                overlap_threshold: threshold,
                ..switchyard_lint::LintOptions::default()
            };
            let model_dir = model_dir.unwrap_or_else(|| config.classifier.model_dir.clone());
            let report = tokio::task::spawn_blocking(move || {
                let encoder = switchyard_lint::load_encoder(&model_dir)?;
                switchyard_lint::lint(&config, Some(&encoder), &options)
            })
            .await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.to_text());
            }
            if report.has_errors() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Compare {
            dataset,
            router,
            baseline,
            node,
            csv,
            limit,
            concurrency,
            timeout_secs,
            api_key,
            per_prompt,
            json,
        } => {
            let options = switchyard_eval::compare::CompareOptions {
                node,
                limit,
                concurrency,
                timeout: std::time::Duration::from_secs(timeout_secs.max(1)),
                api_key,
                ..switchyard_eval::compare::CompareOptions::new(router, baseline)
            };
            let comparison = switchyard_eval::compare::compare(&dataset, &options).await?;
            if let Some(path) = &csv {
                let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
                comparison.write_csv(std::io::BufWriter::new(file))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&comparison.to_json())?);
            } else {
                if per_prompt {
                    print!("{}", comparison.prompt_table());
                }
                print!("{}", comparison.summary_table());
                if let Some(path) = &csv {
                    println!("per-prompt CSV: {}", path.display());
                }
            }
            Ok(())
        }
    }
}

/// `switchyard hash-key`: the hash an operator puts in the config.
fn hash_key(generate: bool) -> anyhow::Result<()> {
    use std::io::Read;
    if generate {
        let bytes: [u8; 32] = rand::random();
        let key = format!("sk-{}", hex::encode(bytes));
        println!("key:    {key}");
        println!("sha256: {}", switchyard_config::KeyHash::of(&key).to_hex());
        return Ok(());
    }
    let mut key = String::new();
    std::io::stdin().read_to_string(&mut key).context("cannot read the key from standard input")?;
    // A trailing newline from `echo` or a file is not part of the key.
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "no key on standard input (try: printf %s \"$KEY\" | switchyard hash-key)");
    if key.chars().count() < 16 {
        eprintln!("warning: a key of fewer than 16 characters can be guessed; use --generate for a random one");
    }
    println!("{}", switchyard_config::KeyHash::of(key).to_hex());
    Ok(())
}

/// `switchyard cluster ...`: one call to the admin API, its JSON printed.
async fn cluster(node: &str, token: Option<&str>, action: ClusterAction) -> anyhow::Result<()> {
    let base = node.trim_end_matches('/');
    let base = if base.starts_with("http://") || base.starts_with("https://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let client = reqwest::Client::new();
    let request = match action {
        ClusterAction::Status => client.get(format!("{base}/v1/cluster")),
        ClusterAction::Add { id, raft_addr, http_addr } => client
            .post(format!("{base}/v1/cluster/nodes"))
            .json(&serde_json::json!({ "id": id, "raft_addr": raft_addr, "http_addr": http_addr })),
        ClusterAction::Remove { id } => client.delete(format!("{base}/v1/cluster/nodes/{id}")),
    };
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("the node's answer is not JSON")?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("{base} answered {status}: {message}");
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
