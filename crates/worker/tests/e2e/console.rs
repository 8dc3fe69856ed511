//! The web console in a real browser (headless Chromium over WebDriver) against a real worker,
//! dev server, git repository and scripted agent: a person logs in, finds the bead in the inbox,
//! rejects the plan with feedback, approves the new one, watches the run live, reads the diff with
//! the Semgrep finding at its line, and the bead is integrated. A read token sees no buttons and
//! its forged decision is refused; a form without its CSRF token is refused; both are audited.

use base64::Engine as _;
use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::Value;

const CONTROL: &str = "alice-console-token-0123456789";
const READ: &str = "viewer-console-token-0123456789";

/// The session cookie a browser gets at login, for requests made by hand.
fn session_cookie(token: &str) -> String {
    format!(
        "chum_session={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
    )
}

fn no_redirects() -> reqwest::Client {
    let _ = http_client(); // installs the process's TLS provider, which reqwest needs first
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// Where the README's screenshots live.
fn screenshot(name: &str) -> std::path::PathBuf {
    workspace_root().join("docs/screenshots").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_rejects_approves_and_follows_a_bead_in_the_browser() {
    let Some(browser) = Browser::start().await else {
        eprintln!("skipped: no Chromium and ChromeDriver in .tools (run scripts/setup.sh)");
        return;
    };
    let eval_calc = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return eval(f\"{a} * {b}\")\n";
    let steps = vec![
        planner(GOOD_PLAN).attempt(1),
        planner(GOOD_PLAN)
            .attempt(2)
            .expect_prompt_contains("please name the test file"),
        calc_executor(eval_calc).handoff(0),
        calc_executor(GOOD_CALC).handoff(1),
        // The review waits for the test, so the page is seen taking phases and gates live.
        held(reviewer(REVIEW_APPROVE), "tk-1"),
    ];
    let h = &Harness::with_steps("console", steps).await;
    let result = h
        .with_worker(|client| async move {
            let tokens = vec![
                worker::api::ApiToken::control("alice", CONTROL),
                worker::api::ApiToken::read("viewer", READ),
            ];
            let (base, _stop) = h.start_api(client.clone(), tokens, None).await;
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            let run = "shark-demo-tk-1";

            // Log in with the control token; the inbox shows the bead waiting at the plan gate.
            browser.open(&format!("{base}/login"), "#token").await;
            browser.fill("#token", CONTROL).await;
            browser.click("button[type=submit]").await;
            browser.wait_for("#inbox tr.waiting[data-bead='tk-1']").await;
            assert_eq!(browser.texts("#who").await, ["alice · control"]);
            let row = browser.texts("#inbox tr.waiting").await.join(" ");
            assert!(row.contains("plan") && row.contains("demo") && row.contains("Add multiply"), "{row}");
            let left = browser.texts("#inbox tr.waiting td:last-child").await.join("");
            assert!(left.ends_with(" s") && !left.contains('d'), "the run's own 60 s gate counts down: {left}");
            browser.screenshot(&screenshot("console-inbox.png")).await;

            // The plan, with its criteria, and the buttons.
            browser.click("#inbox tr.waiting a").await;
            browser.wait_for("#approve").await;
            assert_eq!(browser.texts("#criteria li").await, ["multiply(3, 4) == 12", "python3 -m unittest passes"]);
            assert!(!browser.texts("#planner").await.join("").is_empty(), "the planner's provider is shown");
            browser.screenshot(&screenshot("console-plan.png")).await;

            // The same page for a read token: everything but the buttons.
            let log_in_as = |token: &'static str| {
                let browser = &browser;
                async move {
                    browser.click("header .who form button").await;
                    browser.fill("#token", token).await;
                    browser.click("button[type=submit]").await;
                    browser.wait_for("#who").await;
                }
            };
            log_in_as(READ).await;
            assert_eq!(browser.texts("#who").await, ["viewer · read"]);
            browser.open(&format!("{base}/ui/runs/{run}"), "#criteria").await;
            assert!(!browser.has("#approve").await && !browser.has("#reject").await, "a read token gets no buttons");
            assert!(browser.has("#read-only").await);
            log_in_as(CONTROL).await;
            browser.open(&format!("{base}/ui/runs/{run}"), "#approve").await;

            // A form without the page's CSRF token is refused, and so is a read token's forged
            // decision; both are on record, and the run still waits with no decision.
            let http = no_redirects();
            let no_csrf = http
                .post(format!("{base}/ui/runs/{run}/decide"))
                .header("cookie", session_cookie(CONTROL))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("decision=approve")
                .send()
                .await
                .unwrap();
            assert_eq!(no_csrf.status(), 403);
            let read_page = http
                .get(format!("{base}/ui/runs/{run}"))
                .header("cookie", session_cookie(READ))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(!read_page.contains("id=\"approve\""), "a read token gets no Approve button");
            assert!(read_page.contains("id=\"read-only\""));
            let read_csrf = read_page
                .split("name=\"csrf-token\" content=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("a logged-in page carries its CSRF token")
                .to_string();
            let forged = http
                .post(format!("{base}/ui/runs/{run}/decide"))
                .header("cookie", session_cookie(READ))
                .header("content-type", "application/x-www-form-urlencoded")
                // The token is URL-safe base64: nothing to escape.
                .body(format!("decision=approve&csrf={read_csrf}"))
                .send()
                .await
                .unwrap();
            assert_eq!(forged.status(), 403);
            let audit = h.audit_lines();
            assert!(
                audit.iter().any(|l| l["who"] == "alice" && l["result"].as_str().unwrap_or("").contains("CSRF")),
                "{audit:?}"
            );
            assert!(
                audit.iter().any(|l| l["who"] == "viewer" && l["action"] == "approve"
                    && l["result"].as_str().unwrap_or("").contains("read token")),
                "{audit:?}"
            );
            assert!(status(&handle).await.decisions.is_empty(), "no refused request decided anything");

            // Reject with feedback; the page shows the replanned plan when it arrives.
            browser.fill("#feedback", "please name the test file").await;
            browser.click("#reject").await;
            browser.wait_for_text("#plan h2", "round 2", 60).await;
            assert!(browser.texts("#decisions li").await.join("\n").contains("rejected by alice: please name the test file"));
            browser.click("#approve").await;
            browser.wait_for_text(".notice.ok", "Approved", 30).await;

            // The run goes on while the page stays: phases and gate results arrive live.
            browser
                .client
                .execute("window.chumSamePage = true; return true;", Vec::new())
                .await
                .unwrap();
            browser.wait_for_text("#phases", "review", 90).await;
            browser.wait_for("#gates tr[data-gate='semgrep'].failed").await;
            let same = browser.client.execute("return window.chumSamePage === true;", Vec::new()).await.unwrap();
            assert_eq!(same, Value::Bool(true), "the phases came in over SSE, without a reload");
            std::fs::write(h.prompts.join("go-tk-1"), "").unwrap();

            // The end: the page reloads with the outcome and the diffs.
            browser.wait_for_text("#outcome", "integrated", 120).await;
            let finding = browser.texts("#attempt-1-0 .finding.semgrep").await.join("\n");
            assert!(finding.contains("calc.py:6") && finding.contains("eval"), "{finding}");
            let line_then_finding = browser
                .client
                .execute(
                    "const row = document.querySelector(\"#attempt-1-0 table.diff[data-path='calc.py'] tr[data-line='6']\");\
                     return !!row && row.nextElementSibling.classList.contains('finding');",
                    Vec::new(),
                )
                .await
                .unwrap();
            assert_eq!(line_then_finding, Value::Bool(true), "the finding sits under line 6 of calc.py");
            assert!(browser.has("#attempt-1-1").await, "the redo's diff is shown too");
            browser
                .client
                .execute("document.getElementById('gates').scrollIntoView(); return true;", Vec::new())
                .await
                .unwrap();
            browser.screenshot(&screenshot("console-run.png")).await;

            // The backlog shows the bead closed in its DAG, with the evidence; the other pages
            // answer for a logged-in person.
            browser.open(&format!("{base}/ui/backlog"), "svg.dag").await;
            assert!(browser.has("svg.dag g.node.state-closed[data-bead='tk-1']").await);
            let row = browser.texts("table.backlog tr[data-bead='tk-1']").await.join(" ");
            assert!(row.contains("closed"), "{row}");
            browser.open(&format!("{base}/ui/operations"), "#health li").await;
            assert!(browser.texts("#health").await.join(" ").contains("temporal"));
            browser.open(&format!("{base}/ui/learning"), "#rules").await;
            // Every rule file the gate reads (CHUM's pack) validates with the real engine.
            browser.open(&format!("{base}/ui/learning?validate=1"), "#no-quarantine").await;
            finish(&handle, "console").await
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.approved_by, "alice");
    let calc = std::fs::read_to_string(h.repo.join("calc.py")).unwrap();
    assert!(calc.contains("a * b") && !calc.contains("eval"), "{calc}");
    let decided: Vec<String> = h
        .audit_lines()
        .iter()
        .filter(|l| l["result"] == "ok" && l["who"] == "alice")
        .filter_map(|l| l["action"].as_str().map(str::to_string))
        .collect();
    assert!(
        decided.contains(&"reject".to_string()) && decided.contains(&"approve".to_string()),
        "{decided:?}"
    );
}

/// Operations in the browser: a control token pauses the project's dispatcher and resumes it (the
/// same signals as `chum pause|resume`, audited under its name); a read token sees the state and
/// no button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_is_paused_and_resumed_from_the_operations_page() {
    let Some(browser) = Browser::start().await else {
        eprintln!("skipped: no Chromium and ChromeDriver in .tools (run scripts/setup.sh)");
        return;
    };
    let options = HarnessOptions::with_steps(good_work()).with_config(|c| {
        c.project().concurrency = Some(1);
        c.dispatcher.interval = Some("1s".into());
    });
    let h = &Harness::start("console-ops", options).await;
    h.with_worker(|client| async move {
        let tokens = vec![
            worker::api::ApiToken::control("alice", CONTROL),
            worker::api::ApiToken::read("viewer", READ),
        ];
        let (base, _stop) = h.start_api(client.clone(), tokens, None).await;
        worker::start_dispatchers(&client, &h.config).await;
        let paused = || {
            let client = client.clone();
            async move {
                chum_client::dispatcher::status(&client, "demo")
                    .await
                    .map(|s| s.paused)
                    .ok()
            }
        };
        browser.open(&format!("{base}/login"), "#token").await;
        browser.fill("#token", READ).await;
        browser.click("button[type=submit]").await;
        browser
            .open(
                &format!("{base}/ui/operations"),
                "#dispatchers tr[data-project='demo'] .badge",
            )
            .await;
        assert_eq!(
            browser.texts("#dispatchers tr[data-project='demo'] .badge").await,
            ["running"]
        );
        assert!(
            !browser.has("#dispatchers form").await,
            "a read token gets no Pause button"
        );

        browser.click("header .who form button").await;
        browser.fill("#token", CONTROL).await;
        browser.click("button[type=submit]").await;
        browser
            .open(&format!("{base}/ui/operations"), "#dispatchers form button")
            .await;
        browser.click("#dispatchers tr[data-project='demo'] form button").await;
        browser.wait_for_text(".notice.ok", "paused demo", 30).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while paused().await != Some(true) {
            assert!(tokio::time::Instant::now() < deadline, "the dispatcher never paused");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        browser
            .open(&format!("{base}/ui/operations"), "#dispatchers form button")
            .await;
        assert_eq!(
            browser.texts("#dispatchers tr[data-project='demo'] .badge").await,
            ["paused"]
        );
        browser.click("#dispatchers tr[data-project='demo'] form button").await;
        browser.wait_for_text(".notice.ok", "resumed demo", 30).await;
        while paused().await != Some(false) {
            assert!(tokio::time::Instant::now() < deadline, "the dispatcher never resumed");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let audit = h.audit_lines();
        for action in ["pause", "resume"] {
            assert!(
                audit
                    .iter()
                    .any(|l| l["who"] == "alice" && l["action"] == action && l["result"] == "ok"),
                "{action} is on record: {audit:?}"
            );
        }
        // The dispatcher's Shark waits at the gate for somebody; it goes with the test.
        if let Ok(runs) = chum_client::control::running(&client).await {
            for (id, _) in runs {
                let _ = chum_client::control::cancel(&client, &id, "test over").await;
            }
        }
    })
    .await;
}
