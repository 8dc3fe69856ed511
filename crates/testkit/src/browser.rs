//! A real browser for the console's tests: Debian's headless Chromium driven over WebDriver by
//! ChromeDriver, both installed into `.tools/` by scripts/setup.sh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::paths::workspace_root;
use crate::processes::free_port;

/// The ChromeDriver and Chromium setup installed; `None` where there are none, and then
/// `CHUM_REQUIRE_BROWSER=1` (set by CI) makes that a failure instead of a skipped test.
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let bin = workspace_root().join(".tools/bin");
    let (driver, chromium) = (bin.join("chromedriver"), bin.join("chromium"));
    if driver.is_file() && chromium.is_file() {
        return Some((driver, chromium));
    }
    if std::env::var("CHUM_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("CHUM_REQUIRE_BROWSER=1 but .tools/bin has no chromedriver and chromium: run scripts/setup.sh");
    }
    None
}

/// One browser session; the driver (and its browser) stop when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _scratch: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium session with a fresh profile.
    /// `None` when the tools are not installed (see [`browser_tools`]).
    pub async fn start() -> Option<Browser> {
        let (driver_bin, chromium) = browser_tools()?;
        let scratch = tempfile::tempdir().expect("a scratch directory for the browser");
        let port = free_port();
        // Chromium leaves its profile and temporary files under TMPDIR: keep them in the scratch.
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .env("TMPDIR", scratch.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = scratch.path().join("profile");
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        // The driver takes a moment to listen.
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Browser {
                        client,
                        driver,
                        _scratch: scratch,
                    });
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session from {}: {last:?}", driver_bin.display());
    }

    /// Goes to `url` and waits until `css` is on the page.
    pub async fn open(&self, url: &str, css: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        self.wait_for(css).await;
    }

    /// Waits (up to 60 s) until `css` is on the page.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css} never showed ({e}); the page was:\n{page}");
            }
        }
    }

    /// Waits (up to `secs`) until the text of `css` contains `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && element.text().await.is_ok_and(|t| t.contains(text))
            {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css} never said {text:?} within {secs}s; the page was:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap_or_default() {
            out.push(element.text().await.unwrap_or_default());
        }
        out
    }

    /// Whether anything matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
            .is_empty()
    }

    /// Types `text` into the field `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        self.wait_for(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Saves a PNG of the page at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
