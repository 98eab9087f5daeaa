//! The floor: the thinnest proxy an OpenAI-compatible router could be, run
//! beside Switchyard so the suite shows what any proxy costs on the same
//! machine (`switchyard-bench floor`, the "floor proxy" row of
//! `bench/run.sh`).
//!
//! It does only what every such router must: read the request's JSON,
//! write it to one fixed upstream over pooled keep-alive connections (hyper
//! server, hyper-util's client, HTTP/1, no TLS), read the answer's JSON and
//! write it back. No routing, limits, auth, metrics, logs or failover. What
//! Switchyard adds above this row is the price of those.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// Serves on `listener` until the process ends, forwarding every request
/// (whatever its path) to `upstream`.
pub async fn serve(listener: TcpListener, upstream: Uri) -> anyhow::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        // Without it, a connection is slower, not broken: serve it anyway.
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| forward(client.clone(), upstream.clone(), request));
            // A client that goes away mid-request is no error of ours.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` and serves (see [`serve`]).
pub async fn run(addr: SocketAddr, upstream: Uri) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("floor proxy on http://{} -> {upstream}", listener.local_addr()?);
    serve(listener, upstream).await
}

async fn forward(client: Upstream, upstream: Uri, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(relay(client, upstream, request).await.unwrap_or_else(|err| {
        let body = serde_json::json!({"error": {"message": err.to_string(), "type": "upstream_error", "code": "bad_gateway"}});
        json_response(StatusCode::BAD_GATEWAY, serde_json::to_vec(&body).unwrap_or_default())
    }))
}

async fn relay(client: Upstream, upstream: Uri, request: Request<Incoming>) -> anyhow::Result<Response<Full<Bytes>>> {
    let body = request.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    let outgoing = Request::post(upstream)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from(serde_json::to_vec(&value)?)))?;
    let response = client.request(outgoing).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(json_response(status, serde_json::to_vec(&value)?))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
