//! `GET /dashboard` in a real browser: headless Chromium driven over
//! WebDriver (Debian `chromium` and `chromium-driver`, installed by
//! `tests/setup.sh`). After a known burst of requests the page must show
//! the numbers `/metrics` gives (requests, tokens, cost, savings,
//! task-match and fallback rates, per-model rows, recent decisions), and a
//! screenshot of it is taken (kept in the test's tmp dir for a human look).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use switchyard_mock::MockConfig;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, ask};

/// chromedriver, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(client: &reqwest::Client) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian chromium-driver) is not installed: run tests/setup.sh");
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{}/status", driver.url)).send().await
            && response.json::<Value>().await.is_ok_and(|status| status["value"]["ready"] == true)
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One WebDriver command; answers its `value`.
async fn command(client: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response: Value = request.send().await.unwrap().json().await.unwrap();
    assert!(response["value"].get("error").is_none(), "WebDriver {url}: {response}");
    response["value"].clone()
}

fn total(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_dashboard_shows_what_metrics_say_after_a_known_burst() {
    let template = format!("{STANDARD_CONFIG}signals:\n  baseline_model: pricey\n");
    let sandbox = Sandbox::start_with(&template, MockConfig::default()).await;
    let client = reqwest::Client::new();

    // The page is one self-contained file: nothing loads from elsewhere.
    let page = client.get(sandbox.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "no external URL in the page");

    // The burst: 5 debugging turns (cheap), 2 that fall to `other` (the
    // fallback pool), 1 code review (pricey, manual order).
    for _ in 0..5 {
        assert_eq!(sandbox.chat(&ask("router:eng", "My app crashes with a NullPointerException stack trace"), None).await.status(), 200);
    }
    for text in ["What will the weather be like in Lisbon tomorrow?", "Recommend a good novel for a long flight"] {
        assert_eq!(sandbox.chat(&ask("router:eng", text), None).await.status(), 200);
    }
    assert_eq!(sandbox.chat(&ask("router:eng", "Please review this pull request diff"), None).await.status(), 200);
    let metrics = sandbox
        .metrics_eventually("all 8 requests", |text| total(text, "switchyard_requests_total", "") == 8.0)
        .await;
    let expect_cost = format!("{:.6}", total(&metrics, "switchyard_cost_usd_total", ""));
    let expect_savings = format!("{:.6}", total(&metrics, "switchyard_savings_usd", ""));
    let tokens_in = total(&metrics, "switchyard_tokens_total", "direction=\"input\"");
    let tokens_out = total(&metrics, "switchyard_tokens_total", "direction=\"output\"");
    let matched = total(&metrics, "switchyard_task_match_total", "matched=\"true\"");
    let decided = total(&metrics, "switchyard_task_match_total", "");
    let fallback = total(&metrics, "switchyard_fallback_served_total", "");
    assert_eq!((decided, matched, fallback), (8.0, 6.0, 2.0), "the burst is what the test thinks");
    assert!(tokens_in > 0.0 && tokens_out > 0.0);

    let driver = start_driver(&client).await;
    let session = command(
        &client,
        reqwest::Method::POST,
        &format!("{}/session", driver.url),
        Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"]
        }}}})),
    )
    .await;
    let session_url = format!("{}/session/{}", driver.url, session["sessionId"].as_str().unwrap());
    command(&client, reqwest::Method::POST, &format!("{session_url}/url"), Some(json!({"url": sandbox.url("/dashboard")}))).await;
    let read = |script: &'static str| {
        let (client, url) = (client.clone(), format!("{session_url}/execute/sync"));
        async move { command(&client, reqwest::Method::POST, &url, Some(json!({"script": script, "args": []}))).await }
    };
    // Wait for the page's first refresh to have rendered the decisions too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tiles = loop {
        let tiles = read(
            "const t = id => document.getElementById(id).textContent;
             return {requests: t('requests-total'), tokens_in: t('tokens-in'), tokens_out: t('tokens-out'),
                     cost: t('cost-usd'), savings: t('savings-usd'), task_match: t('task-match-rate'),
                     fallback: t('fallback-rate'), failed: t('failed-rate'),
                     decisions: document.querySelectorAll('#decisions tbody tr').length,
                     refreshed: Number(document.body.dataset.refreshed || 0)};",
        )
        .await;
        if tiles["requests"] == "8" && tiles["decisions"] == 8 {
            break tiles;
        }
        assert!(Instant::now() < deadline, "the dashboard never showed the burst: {tiles}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let thousands = |n: f64| {
        let digits = format!("{}", n as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert_eq!(tiles["tokens_in"], thousands(tokens_in).as_str(), "{tiles}");
    assert_eq!(tiles["tokens_out"], thousands(tokens_out).as_str());
    assert_eq!(tiles["cost"], expect_cost.as_str());
    assert_eq!(tiles["savings"], expect_savings.as_str());
    assert_eq!(tiles["task_match"], "75.0%", "6 of 8 matched a task");
    assert_eq!(tiles["fallback"], "25.0%", "2 of 8 served by the fallback pool");
    assert_eq!(tiles["failed"], "0.0%");
    let models = read(
        "return [...document.querySelectorAll('#models tbody tr')].map(tr =>
           [tr.dataset.model, tr.querySelector('.requests').textContent]);",
    )
    .await;
    let per_model = |model: &str| total(&metrics, "switchyard_requests_total", &format!("model=\"{model}\""));
    for row in models.as_array().unwrap() {
        let model = row[0].as_str().unwrap();
        assert_eq!(row[1].as_str().unwrap(), format!("{}", per_model(model) as u64), "{model}");
    }
    assert_eq!(models.as_array().unwrap().len(), 3, "cheap, pricey and the fallback model: {models}");

    // The screenshot: a real PNG of the rendered page.
    let png = command(&client, reqwest::Method::GET, &format!("{session_url}/screenshot"), None).await;
    let png = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(width >= 1000, "{width}");
    assert!(png.len() > 20_000, "a rendered page, not a blank one: {} bytes", png.len());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {} ({} bytes); tiles: {tiles}", path.display(), png.len());
    command(&client, reqwest::Method::DELETE, &session_url, None).await;
    drop(driver);
    sandbox.stop().await;
}
