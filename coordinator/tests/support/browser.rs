//! A real headless Chromium driven through its WebDriver (`chromedriver`, Debian's
//! `chromium-driver`), for the console and `report.html`. Screenshots go to
//! `target/browser-screenshots/` (or `$HERD_SCREENSHOTS`): CI keeps them as artifacts.
//!
//! Without a browser the tests say so and pass, unless `HERD_REQUIRE_BROWSER=1` (CI sets it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| herd_tests::on_path(n))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A fresh browser, or None (test skipped) when chromedriver is not installed.
    pub async fn start() -> Option<Browser> {
        let Some(driver_bin) = find(&["chromedriver"]) else {
            assert!(
                std::env::var("HERD_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "HERD_REQUIRE_BROWSER=1 but chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = free_port();
        // Its own process group: the browsers it starts go with it, even when a test panics.
        let driver = tokio::process::Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1500".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        // Chromium's sandbox cannot start as root (CI machines run as root).
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox".into());
        }
        let mut opts = json!({ "args": args });
        // Debian's /usr/bin/chromium is a wrapper script; the binary behind it starts faster.
        if std::path::Path::new("/usr/lib/chromium/chromium").exists() {
            opts["binary"] = json!("/usr/lib/chromium/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), opts);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session at {url}: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Runs `script` (a function body returning a value) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something truthy, and returns it.
    pub async fn until(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.shot("timeout").await;
                let text = self.js("return document.body.innerText").await;
                panic!("waited {timeout:?} for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// A screenshot of the window, kept as `<dir>/<name>.png`.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let dir = std::env::var_os("HERD_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots")
            });
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = self.client.screenshot().await.expect("screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Every form control without an accessible name (label, aria-label or aria-labelledby).
    pub async fn unlabelled(&self) -> Value {
        self.js(
            "return [...document.querySelectorAll('input,select,textarea,button')].filter(e => {
               if (e.type === 'hidden') return false;
               if (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')) return false;
               if (e.labels && e.labels.length) return false;
               if (e.tagName === 'BUTTON' && e.textContent.trim()) return false;
               return true;
             }).map(e => e.outerHTML.slice(0, 120));",
        )
        .await
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// chromedriver and every browser it started (its process group), however the test ended.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: signalling the process group of the driver this test started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}
