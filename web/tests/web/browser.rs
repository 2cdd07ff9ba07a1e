//! A real browser against a real server: Debian's Chromium driven through chromedriver
//! (WebDriver, via fantoccini). Logs in as an auditor, filters the fleet to H800, opens a GPU,
//! downloads the CSV and checks its rows, confirms there is no admin form, saves a screenshot to
//! `target/browser/`. `scripts/test` installs `chromium` and `chromium-driver` when missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chipledger_web::ServerConfig;
use fantoccini::{ClientBuilder, Locator};

use crate::{world, H800_UUID};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn find(names: &[&str]) -> PathBuf {
    for n in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("{names:?} not found: install Debian's chromium and chromium-driver (scripts/test does it)");
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_auditor_filters_the_fleet_opens_a_gpu_and_downloads_the_csv() {
    let w = world();
    // The server, on loopback, for the rest of the test process.
    let (tx, rx) = std::sync::mpsc::channel();
    let ledger = w.ledger.clone();
    std::thread::spawn(move || {
        chipledger_web::serve(ledger, "127.0.0.1:0", ServerConfig::default(), |addr| tx.send(addr).unwrap())
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let base = format!("http://{addr}");

    let port = free_port();
    let driver = Driver(
        Command::new(find(&["chromedriver"]))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    let downloads = out.join("downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).unwrap();
    // Chromium wants an absolute path without `..` for downloads.
    let (out, downloads) = (out.canonicalize().unwrap(), downloads.canonicalize().unwrap());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": find(&["chromium"]),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000"],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                }
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");

        // Anonymous → the login page; log in with the auditor's token.
        c.goto(&format!("{base}/")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().starts_with("/login"));
        c.find(Locator::Id("token")).await.unwrap().send_keys(&w.auditor_token).await.unwrap();
        c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
        // A click starts a navigation; wait for the page it leads to.
        let who = match c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("who")).await {
            Ok(e) => e.text().await.unwrap(),
            Err(e) => {
                panic!("no #who after login at {}: {e}\n{}", c.current_url().await.unwrap(), c.source().await.unwrap())
            }
        };
        assert_eq!(who, "alice (audit) (auditor)");

        // An auditor sees no admin form, and cannot reach it.
        assert!(c.find(Locator::Id("new-acquisition")).await.is_err());
        c.goto(&format!("{base}/acquisitions/new")).await.unwrap();
        let msg = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("message")).await.unwrap();
        assert!(c.find(Locator::Id("acquisition-form")).await.is_err());
        let msg = msg.text().await.unwrap();
        assert!(msg.contains("only an admin"), "{msg}");

        // Filter the fleet to H800.
        c.goto(&format!("{base}/")).await.unwrap();
        c.find(Locator::Css("#filter-sku option[value='H800-SXM5-80GB']")).await.unwrap().click().await.unwrap();
        c.find(Locator::Id("apply")).await.unwrap().click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.current_url().await.unwrap().query().unwrap_or("").contains("sku=H800-SXM5-80GB") {
            assert!(Instant::now() < deadline, "the filter did not navigate");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("fleet")).await.unwrap();
        let skus = c.find_all(Locator::Css("#fleet td.sku")).await.unwrap();
        assert!(!skus.is_empty());
        for s in &skus {
            assert_eq!(s.text().await.unwrap(), "H800-SXM5-80GB");
        }
        let shown = skus.len();
        c.screenshot().await.map(|png| std::fs::write(out.join("fleet-h800.png"), png).unwrap()).unwrap();

        // Download the CSV of exactly this list, and check its rows.
        c.find(Locator::Id("export-csv")).await.unwrap().click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let csv_path = loop {
            let done: Vec<PathBuf> = std::fs::read_dir(&downloads)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "csv"))
                .collect();
            if let Some(p) = done.into_iter().next() {
                break p;
            }
            assert!(Instant::now() < deadline, "the CSV download did not arrive in {}", downloads.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut r = csv::Reader::from_path(&csv_path).unwrap();
        let header = r.headers().unwrap().clone();
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (sku, verdict) = (column("sku"), column("acquisition_verdict"));
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), shown);
        assert!(rows.iter().all(|row| &row[sku] == "H800-SXM5-80GB" && &row[verdict] == "no-acquisition-record"));

        // Open a GPU's page from the list.
        c.find(Locator::Css(&format!("a.gpu[href='/gpus/{H800_UUID}']"))).await.unwrap().click().await.unwrap();
        let sku = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("gpu-sku")).await.unwrap();
        assert_eq!(sku.text().await.unwrap(), "H800-SXM5-80GB");
        assert_eq!(c.find(Locator::Id("verdict")).await.unwrap().text().await.unwrap(), "no-acquisition-record");
        let timeline = c.find(Locator::Id("timeline")).await.unwrap().text().await.unwrap();
        assert!(timeline.contains("attested on hgx-h800-01"), "{timeline}");
        c.screenshot().await.map(|png| std::fs::write(out.join("gpu.png"), png).unwrap()).unwrap();
        c.close().await.unwrap();
    });
    drop(driver);
}
