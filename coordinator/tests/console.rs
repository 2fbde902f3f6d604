//! The web console and `report.html` in a real headless Chromium (WebDriver), against a real
//! `herd serve` (local profile: embedded broker, agents as child processes) and a real target
//! whose own count is the ground truth: sign in, write a spec that the editor checks as it is
//! typed, start it, watch the live charts gain points, read the verdict, make the run the
//! spec's baseline, run a 2× slower version that its baseline threshold fails, compare the two,
//! open the report, manage a schedule, cancel a run. Screenshots are kept (`support/browser.rs`).

use std::time::Duration;

use herd_tests::start_target;
use serde_json::{json, Value};

#[path = "support/serve.rs"]
mod serve;
use serve::Serve;

#[path = "support/api.rs"]
mod api;
use api::API;

#[path = "support/browser.rs"]
mod browser;
use browser::Browser;

const SECS: Duration = Duration::from_secs(1);

fn spec(url: &str, delay: u32, duration: &str, thresholds: &str) -> String {
    format!(
        "name: console-gate\ntarget: {url}\nscenario:\n  - request: GET /delay/{delay}\nload: {{executor: constant-vus, vus: 2, duration: {duration}}}\nthresholds: [{thresholds}]\n"
    )
}

impl Browser {
    async fn set_editor(&self, text: &str) {
        self.client
            .execute(
                "const a = document.getElementById('spec'); a.value = arguments[0]; a.dispatchEvent(new Event('input'));",
                vec![json!(text)],
            )
            .await
            .expect("set the editor");
    }

    /// Writes `text` in the editor, waits until the server calls it valid, and starts it;
    /// returns the run id from the page it lands on.
    async fn start_run(&self, base: &str, text: &str) -> String {
        self.client
            .goto(&format!("{base}/#/new"))
            .await
            .expect("new run");
        self.until(
            "the editor",
            "return document.getElementById('spec')",
            20 * SECS,
        )
        .await;
        self.set_editor(text).await;
        self.until(
            "the spec to be valid",
            "return document.querySelector('#problems li.ok') && !document.getElementById('start').disabled",
            20 * SECS,
        )
        .await;
        self.click("#start").await;
        let id = self
            .until(
                "the run page",
                "const m = location.hash.match(/^#\\/runs\\/(.+)$/); return m && document.getElementById('run-title') ? decodeURIComponent(m[1]) : null",
                30 * SECS,
            )
            .await;
        id.as_str().expect("run id").to_string()
    }

    /// Points in the run page's requests-per-second line.
    async fn points(&self) -> u64 {
        self.js("const l = document.querySelector('polyline[data-series=\"req/s\"]'); return l ? Number(l.dataset.points) : 0;")
            .await
            .as_u64()
            .unwrap_or(0)
    }

    async fn verdict(&self) -> String {
        self.until(
            "the verdict",
            "const v = document.querySelector('#verdict .badge'); return v ? v.textContent : null",
            60 * SECS,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_watches_gates_and_compares_in_the_console() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let base = serve.api_url();
    let admin = serve.token("admin");

    // Sign in: a wrong token is refused with a message, the right one lands on the runs list.
    b.client.goto(&format!("{base}/")).await.expect("console");
    b.until(
        "the sign-in form",
        "return document.getElementById('token')",
        20 * SECS,
    )
    .await;
    assert_eq!(b.unlabelled().await, json!([]), "every control has a label");
    let token = b
        .client
        .find(fantoccini::Locator::Css("#token"))
        .await
        .expect("token field");
    token.send_keys("herd_00000000_nope").await.expect("type");
    b.click("#signin").await;
    b.until(
        "the refusal",
        "return document.getElementById('flash').textContent.includes('not accepted')",
        10 * SECS,
    )
    .await;
    token.clear().await.expect("clear");
    token.send_keys(&admin).await.expect("type");
    b.click("#signin").await;
    b.until("the runs list", "return document.querySelector('h1') && document.querySelector('h1').textContent === 'Runs'", 20 * SECS).await;
    assert!(
        b.text("#who").await.contains("admin"),
        "the header names the caller's role"
    );

    // The editor checks as one types: a mistake is shown on its line, from the server's answer.
    b.client
        .goto(&format!("{base}/#/new"))
        .await
        .expect("new run");
    b.until(
        "the editor",
        "return document.getElementById('spec')",
        20 * SECS,
    )
    .await;
    assert_eq!(b.unlabelled().await, json!([]), "every control has a label");
    b.set_editor(&spec(&t.url(), 10, "6s", "'error_rate < 1%'"))
        .await;
    let area = b
        .client
        .find(fantoccini::Locator::Css("#spec"))
        .await
        .expect("editor");
    area.send_keys("bogus_key: 1")
        .await
        .expect("type a mistake");
    let line = b
        .until(
            "a positioned problem",
            "const p = document.querySelector('#problems li.problem'); return p ? p.dataset.line + ' ' + p.textContent : null",
            20 * SECS,
        )
        .await;
    let line = line.as_str().unwrap_or_default().to_string();
    assert!(
        line.starts_with("7 ") && line.contains("bogus_key"),
        "{line}"
    );
    assert!(
        b.js("return document.getElementById('start').disabled")
            .await
            == json!(true),
        "an invalid spec cannot start"
    );
    assert_eq!(
        b.js("return [...document.querySelectorAll('.gutter .bad')].map(e => e.textContent)")
            .await,
        json!(["7"]),
        "the gutter marks the line"
    );
    b.shot("editor-problem").await;

    // A run, watched live: the chart gains points each second, then the verdict comes.
    let before = t.stats().requests;
    let run1 = b
        .start_run(&base, &spec(&t.url(), 10, "6s", "'error_rate < 1%'"))
        .await;
    b.until(
        "a first live point",
        "return document.querySelector('polyline[data-series=\"req/s\"]')",
        30 * SECS,
    )
    .await;
    let first = b.points().await;
    b.until(
        "the live chart to gain points",
        &format!("const l = document.querySelector('polyline[data-series=\"req/s\"]'); return l && Number(l.dataset.points) > {first} && document.getElementById('live-status').textContent.startsWith('Live')"),
        20 * SECS,
    )
    .await;
    assert!(b.points().await > first);
    b.shot("run-live").await;
    assert_eq!(b.verdict().await, "passed");
    let served = t.stats().requests - before;
    let shown: u64 = b
        .text("#card-requests")
        .await
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a count");
    assert_eq!(shown, served, "the page's count is the target's");
    assert!(b.points().await >= 5, "the finished run's series is drawn");
    b.shot("run-page").await;

    // It becomes the spec's baseline; a 2× slower run fails its baseline threshold by name.
    b.click("#make-baseline").await;
    b.until(
        "the baseline set",
        "return document.getElementById('flash').textContent.includes('is now the baseline')",
        10 * SECS,
    )
    .await;
    let run2 = b
        .start_run(
            &base,
            &spec(
                &t.url(),
                20,
                "4s",
                "'error_rate < 1%', 'p95 < baseline.p95 * 1.2'",
            ),
        )
        .await;
    assert_eq!(b.verdict().await, "failed");
    let reason = b.text("table").await;
    assert!(reason.contains("regression against baseline"), "{reason}");
    assert!(
        reason.contains(&run1),
        "the baseline run is named: {reason}"
    );

    // Compare with the baseline: the verdict, the deltas, the overlays.
    b.click("#compare").await;
    b.until(
        "the comparison",
        "return document.getElementById('regression')",
        30 * SECS,
    )
    .await;
    let verdict = b.text("#regression").await;
    assert!(
        verdict.contains("Regression") && verdict.contains("regression against baseline"),
        "{verdict}"
    );
    let p95 = b
        .js("return [...document.querySelectorAll('#deltas tr')].map(r => r.innerText).find(t => t.startsWith('all') && t.includes('p95'))")
        .await;
    assert!(
        p95.as_str().is_some_and(|r| r.contains('+')),
        "p95 went up: {p95}"
    );
    assert!(
        b.js("return document.querySelectorAll('polyline.base').length")
            .await
            .as_u64()
            > Some(0),
        "the baseline's series is overlaid"
    );
    b.shot("compare").await;

    // The report, opened from the console (a blob: page) with its charts drawn.
    b.client
        .goto(&format!("{base}/#/runs/{run2}"))
        .await
        .expect("run page");
    let console = b.client.window().await.expect("this window");
    b.click("#report").await;
    let mut windows = Vec::new();
    for _ in 0..100 {
        windows = b.client.windows().await.expect("windows");
        if windows.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(windows.len(), 2, "the report opened beside the console");
    let report = windows
        .iter()
        .find(|w| **w != console)
        .expect("the new window")
        .clone();
    b.client.switch_to_window(report).await.expect("switch");
    b.until(
        "the report's charts",
        "return document.querySelectorAll('svg.chart polyline').length",
        20 * SECS,
    )
    .await;
    assert!(b
        .js("return document.title")
        .await
        .as_str()
        .is_some_and(|t| t.contains(&run2)));
    let named = b
        .js("return document.body.innerText.includes('regression against baseline')")
        .await;
    assert_eq!(named, json!(true), "the report names the regression");
    let overlays = b
        .js("return document.querySelectorAll('svg.chart polyline.base').length")
        .await;
    assert!(
        overlays.as_u64() > Some(0),
        "the baseline's series is overlaid: {overlays}"
    );
    b.shot("report").await;
    b.client.close_window().await.expect("close the report");
    b.client.switch_to_window(console).await.expect("back");

    // The runs list filters by verdict.
    b.client
        .goto(&format!("{base}/#/runs?verdict=failed"))
        .await
        .expect("runs");
    b.until(
        "the filtered list",
        "return document.querySelector('#runs tbody')",
        20 * SECS,
    )
    .await;
    let ids = b.js("return [...document.querySelectorAll('#runs tbody tr td:first-child')].map(e => e.textContent)").await;
    assert_eq!(ids, json!([run2]));

    // Schedules: the spec is stored from the editor, scheduled, shown with its next fire times,
    // and disabled.
    b.client
        .goto(&format!("{base}/#/new"))
        .await
        .expect("new run");
    b.until(
        "the editor",
        "return document.getElementById('spec')",
        20 * SECS,
    )
    .await;
    b.set_editor(&spec(&t.url(), 10, "2s", "'error_rate < 1%'"))
        .await;
    b.click("#save-spec").await;
    b.until(
        "the spec saved",
        "return document.getElementById('flash').textContent.includes('Saved console-gate')",
        10 * SECS,
    )
    .await;
    b.client
        .goto(&format!("{base}/#/schedules"))
        .await
        .expect("schedules");
    b.until(
        "the form",
        "return document.getElementById('s-name')",
        20 * SECS,
    )
    .await;
    assert_eq!(b.unlabelled().await, json!([]), "every control has a label");
    b.client
        .find(fantoccini::Locator::Css("#s-name"))
        .await
        .expect("name")
        .send_keys("nightly")
        .await
        .expect("type");
    b.client
        .execute("document.getElementById('s-cron').value = '0 3 * * *'; document.getElementById('s-zone').value = 'UTC';", vec![])
        .await
        .expect("cron");
    b.click("form[aria-label='Add a schedule'] button[type=submit]")
        .await;
    let row = b
        .until("the schedule listed", "const r = [...document.querySelectorAll('tbody tr')].find(r => r.innerText.includes('nightly')); return r ? r.innerText : null", 20 * SECS)
        .await;
    let row = row.as_str().unwrap_or_default().to_string();
    assert!(row.contains("enabled") && row.contains("03:00:00"), "{row}");
    b.click("button[aria-label='Disable nightly']").await;
    b.until("disabled", "const r = [...document.querySelectorAll('tbody tr')].find(r => r.innerText.includes('nightly')); return r && r.innerText.includes('disabled')", 20 * SECS).await;

    // Cancel from the run page: the run stops and keeps what it measured.
    let run3 = b
        .start_run(&base, &spec(&t.url(), 10, "60s", "'error_rate < 1%'"))
        .await;
    b.until(
        "the run live",
        "return document.getElementById('live-status').textContent.startsWith('Live ·')",
        30 * SECS,
    )
    .await;
    b.click("#cancel").await;
    b.client.accept_alert().await.expect("confirm the cancel");
    b.until(
        "the run cancelled",
        "const s = document.querySelector('#run-title + .badge'); return s && s.textContent === 'cancelled'",
        60 * SECS,
    )
    .await;
    let v: Value = api::json(
        api::client()
            .get(format!("{base}/api/v1/runs/{run3}"))
            .bearer_auth(&admin),
    )
    .await
    .1;
    assert_eq!(v["status"], "cancelled", "{v}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let serve = Serve::start_with(&[], API).await;
    let base = serve.api_url();
    let c = api::client();
    let r = c.get(format!("{base}/")).send().await.expect("index");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let tag = r.headers()["etag"].clone();
    let again = c
        .get(format!("{base}/"))
        .header("if-none-match", tag)
        .send()
        .await
        .expect("index");
    assert_eq!(
        again.status(),
        304,
        "unchanged files are revalidated, not resent"
    );
    let js = c
        .get(format!("{base}/console/app.js"))
        .send()
        .await
        .expect("app.js");
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let missing = c
        .get(format!("{base}/console/../serve.toml"))
        .send()
        .await
        .expect("traversal");
    assert_eq!(missing.status(), 404, "only the embedded files are served");
    let (_, cfg) = api::json(c.get(format!("{base}/console/config.json"))).await;
    assert_eq!(cfg, json!({"oidc": null}), "no OIDC sign-in configured");
}

/// On AWS people sign in through the user pool: the console runs the code flow with PKCE against
/// the provider and uses its access token, which the API checks like any OIDC token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_the_identity_provider() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let idp = api::Idp::start().await;
    let serve = Serve::start_with(&[], &format!("{API}{}", idp.config_with_login())).await;
    let base = serve.api_url();
    let c = api::client();
    let (_, cfg) = api::json(c.get(format!("{base}/console/config.json"))).await;
    assert_eq!(cfg["oidc"]["client_id"], "herd-client", "{cfg}");
    b.client.goto(&format!("{base}/")).await.expect("console");
    b.click("#oidc").await;
    b.until(
        "signed in through the provider",
        "return document.getElementById('who').textContent",
        30 * SECS,
    )
    .await;
    assert_eq!(b.text("#who").await, "ann@example.com · runner");
    assert_eq!(
        b.js("return location.search").await,
        json!(""),
        "the code is not left in the address bar"
    );
    // A runner may start runs but not set baselines: the pages offer what the role allows.
    b.client
        .goto(&format!("{base}/#/specs"))
        .await
        .expect("specs");
    b.until("the specs page", "return document.querySelector('h1') && document.querySelector('h1').textContent.startsWith('Specs')", 20 * SECS).await;
    b.client
        .goto(&format!("{base}/#/new"))
        .await
        .expect("new run");
    b.until(
        "the editor",
        "return document.getElementById('spec')",
        20 * SECS,
    )
    .await;
    b.close().await;
}

/// A spec that names a data file: the editor says what is missing until the file is chosen,
/// then checks the two together, and the run uses the file (the target saw each of its rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_and_its_data_file_are_checked_together_and_run_from_the_console() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let base = serve.api_url();
    let runner = serve.token("runner");
    let files = tempfile::tempdir().expect("temp dir");
    let csv = files.path().join("users.csv");
    std::fs::write(&csv, "name\nann\nbob\ncyd\n").expect("csv");

    b.client.goto(&format!("{base}/")).await.expect("console");
    let token = b
        .client
        .wait()
        .for_element(fantoccini::Locator::Css("#token"))
        .await
        .expect("token field");
    token.send_keys(&runner).await.expect("type");
    b.click("#signin").await;
    b.until(
        "signed in",
        "return document.getElementById('who').textContent",
        20 * SECS,
    )
    .await;
    b.client
        .goto(&format!("{base}/#/new"))
        .await
        .expect("new run");
    b.until(
        "the editor",
        "return document.getElementById('spec')",
        20 * SECS,
    )
    .await;
    b.set_editor(&format!(
        "name: with-data\ntarget: {}\ndata:\n  users: {{file: users.csv}}\nscenario:\n  - request: GET /items/{{{{users.name}}}}\nload: {{executor: per-vu-iterations, vus: 1, iterations: 6}}\n",
        t.url()
    ))
    .await;
    let missing = b
        .until("the missing file named", "const p = document.querySelector('#problems li.problem'); return p ? p.textContent : null", 20 * SECS)
        .await;
    assert!(
        missing.as_str().is_some_and(|m| m.contains("data.users")),
        "{missing}"
    );
    b.client
        .find(fantoccini::Locator::Css("#files"))
        .await
        .expect("file input")
        .send_keys(csv.to_str().expect("path"))
        .await
        .expect("choose the file");
    b.until(
        "the spec and its file valid",
        "return document.querySelector('#problems li.ok') && !document.getElementById('start').disabled",
        20 * SECS,
    )
    .await;
    b.click("#start").await;
    assert_eq!(b.verdict().await, "passed");
    // Six requests, each for a row of the file (how rows are dealt to agents is the data
    // section's business).
    let by_path = t.stats().by_path;
    assert_eq!(by_path.values().sum::<u64>(), 6, "{by_path:?}");
    assert!(
        by_path
            .keys()
            .all(|p| ["/items/ann", "/items/bob", "/items/cyd"].contains(&p.as_str())),
        "{by_path:?}"
    );
    b.close().await;
}
