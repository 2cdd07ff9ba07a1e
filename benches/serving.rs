//! The serving node's cost over the bare engine, and its provenance under load.
//!
//! On the demo's ledger (`chipledger demo`) and its tiny R1-templated model — or SmolLM2 when
//! `CHIPLEDGER_SMOLLM2_GGUF` names it — with the same greedy requests:
//!
//! 1. Built-in engine: the bare engine is `chipledger_gateway::candle::CandlePool` called in
//!    process; the node is `chipledger node serve` (this profile's binary) over loopback HTTP with
//!    the same number of workers. p50 latency of one client, and throughput of 8 concurrent ones.
//! 2. Upstream mode (when `target/llama-server-venv` holds llama-cpp-python's server): the bare
//!    engine is llama.cpp's server over HTTP; the node fronts it.
//! 3. Provenance under load: 8 clients for 5 s on max_tokens 1; responses/s, and the log appends/s
//!    that recorded them (serving-batch records in the ledger).
//!
//! Run: `cargo bench --bench serving`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chipledger_gateway::candle::{CandlePool, Event, Job};
use chipledger_inference::runner::{Backend, SamplingConfig};

const BIN: &str = env!("CARGO_BIN_EXE_chipledger");
const PROMPT: &str = "What is the capital of France?";
const WORKERS: usize = 2;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(Command::new(BIN).args(["--data-dir", data.to_str().unwrap(), "demo"]).output().unwrap().status.success());
    let max_tokens = 8;
    let body = request_body(max_tokens);

    // 1. Built-in engine, on the tiny model and on SmolLM2.
    let tiny = data.join("models/tiny-r1-distill-qwen2");
    let smol = std::env::var_os("CHIPLEDGER_SMOLLM2_GGUF").map(PathBuf::from);
    for (model, n) in std::iter::once((tiny.clone(), 300)).chain(smol.clone().map(|m| (m, 60))) {
        println!("model {} (max_tokens {max_tokens}, greedy), {WORKERS} engine workers", model.display());
        let pool = CandlePool::start(&model, Backend::Cpu, WORKERS, 64).unwrap().0;
        let bare = |_: usize| bare_request(&pool, max_tokens);
        let bare1 = latencies(1, n, &bare);
        let bare8 = throughput(8, Duration::from_secs(5), &bare);
        drop(pool);
        let (mut node, url) = node_serve(&data, &model, &[]);
        let via = |_: usize| http_request(&url, &body);
        let node1 = latencies(1, n, &via);
        let node8 = throughput(8, Duration::from_secs(5), &via);
        report("built-in", &bare1, bare8, &node1, node8);
        let _ = node.kill();
        let _ = node.wait();
    }

    // 2. Upstream mode, in front of llama.cpp's server.
    let llama = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/llama-server-venv/bin/python");
    match (llama.exists(), smol) {
        (true, Some(gguf)) => {
            let port = free_port();
            let mut server = Command::new(&llama)
                .args(["-m", "llama_cpp.server", "--model", gguf.to_str().unwrap(), "--host", "127.0.0.1"])
                .args(["--port", &port.to_string(), "--n_ctx", "2048"])
                // Its OpenMP threads would otherwise spin against the node's on 2 cores.
                .env("OMP_WAIT_POLICY", "passive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let upstream = format!("http://127.0.0.1:{port}");
            wait_for(&format!("{upstream}/v1/models"));
            let direct = |_: usize| http_request(&upstream, &body);
            let bare1 = latencies(1, 100, &direct);
            let bare8 = throughput(8, Duration::from_secs(5), &direct);
            let (mut node, url) = node_serve(&data, &gguf, &["--upstream", &upstream]);
            let via = |_: usize| http_request(&url, &body);
            let node1 = latencies(1, 100, &via);
            let node8 = throughput(8, Duration::from_secs(5), &via);
            report("upstream (llama.cpp server)", &bare1, bare8, &node1, node8);
            let _ = node.kill();
            let _ = node.wait();
            let _ = server.kill();
            let _ = server.wait();
        }
        _ => println!("upstream: skipped (needs target/llama-server-venv, built by scripts/openai-test, and CHIPLEDGER_SMOLLM2_GGUF)"),
    }

    // 3. Provenance under load: the tiny model, one token per response.
    let before = batches(&data);
    let (mut node, url) = node_serve(&data, &tiny, &["--queue", "256"]);
    let one = request_body(1);
    let via = |_: usize| http_request(&url, &one);
    let start = Instant::now();
    let per_s = throughput(8, Duration::from_secs(5), &via);
    // The last batch goes in at the next interval.
    std::thread::sleep(Duration::from_millis(1500));
    let elapsed = start.elapsed().as_secs_f64();
    let status: serde_json::Value = serde_json::from_str(&get(&format!("{url}/status"))).unwrap();
    let _ = node.kill();
    let _ = node.wait();
    let appends = batches(&data) - before;
    println!(
        "provenance under load: {per_s:.0} responses/s for 5 s (8 clients); {} responses recorded in {appends} serving-batch appends over {elapsed:.1} s = {:.2} appends/s",
        status["provenance"]["recorded"],
        appends as f64 / elapsed
    );
}

fn request_body(max_tokens: usize) -> String {
    serde_json::json!({
        "messages": [{ "role": "user", "content": PROMPT }],
        "max_tokens": max_tokens, "temperature": 0, "seed": 7,
    })
    .to_string()
}

fn bare_request(pool: &CandlePool, max_tokens: usize) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prompt = pool.template.apply_chat(&[("user", PROMPT)]);
    let sampling = SamplingConfig { temperature: 0.0, top_p: 0.95, seed: 7, max_tokens };
    let mut job = Job {
        prompt,
        sampling,
        events: tx,
        arrived: Instant::now(),
        stream: false,
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    // The node answers 429 past its queue; the bare caller waits instead.
    loop {
        match pool.try_submit(job) {
            Ok(()) => break,
            Err(j) => {
                job = j;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    while let Some(e) = rx.blocking_recv() {
        match e {
            Event::Done { .. } => return,
            Event::Failed(m) | Event::Refused(m) => panic!("{m}"),
            _ => {}
        }
    }
}

/// One keep-alive agent per client thread, as a real client holds its connection.
fn agent() -> ureq::Agent {
    thread_local! {
        static AGENT: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
    }
    AGENT.with(|a| a.clone())
}

fn http_request(url: &str, body: &str) {
    let agent = agent();
    loop {
        let r = agent
            .post(&format!("{url}/v1/chat/completions"))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        match r.status().as_u16() {
            200 => {
                let _ = r.into_body().read_to_vec().unwrap();
                return;
            }
            429 => std::thread::sleep(Duration::from_millis(1)),
            other => panic!("status {other}"),
        }
    }
}

fn get(url: &str) -> String {
    ureq::get(url).call().unwrap().body_mut().read_to_string().unwrap()
}

/// Sorted latencies (ms) of `n` sequential requests from each of `clients` threads.
fn latencies(clients: usize, n: usize, f: &(dyn Fn(usize) + Sync)) -> Vec<f64> {
    for _ in 0..5 {
        f(0); // warm
    }
    let mut all: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    (0..n)
                        .map(|_| {
                            let t = Instant::now();
                            f(c);
                            t.elapsed().as_secs_f64() * 1000.0
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    all.sort_by(|a, b| a.total_cmp(b));
    all
}

/// Requests per second from `clients` threads for `for_`.
fn throughput(clients: usize, for_: Duration, f: &(dyn Fn(usize) + Sync)) -> f64 {
    let done = AtomicU64::new(0);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (done, stop) = (&done, stop.clone());
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    f(c);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(for_);
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(mode: &str, bare1: &[f64], bare8: f64, node1: &[f64], node8: f64) {
    println!(
        "{mode}: 1 client p50 {:.2} ms bare, {:.2} ms through the node: +{:.2} ms (p99 {:.2} vs {:.2}); 8 clients {bare8:.1} req/s bare, {node8:.1} through the node = {:.1} %",
        pct(bare1, 0.5),
        pct(node1, 0.5),
        pct(node1, 0.5) - pct(bare1, 0.5),
        pct(bare1, 0.99),
        pct(node1, 0.99),
        node8 / bare8 * 100.0
    );
}

fn node_serve(data: &Path, model: &Path, extra: &[&str]) -> (Child, String) {
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/inference/policies/demo.toml");
    let workers = WORKERS.to_string();
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "node",
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--policy",
        policy,
        "--node-name",
        "node-01",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        &workers,
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(BIN).args(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, url)
}

fn batches(data: &Path) -> u64 {
    let out = Command::new(BIN)
        .args(["--data-dir", data.to_str().unwrap(), "ledger", "log", "--kind", "serving-batch", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().map(|a| a.len() as u64).unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ureq::get(url).call().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} did not answer");
}
