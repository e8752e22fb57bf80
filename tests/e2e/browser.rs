//! A real browser for the dashboards' tests: Debian's headless Chromium,
//! driven through the DevTools protocol (`headless_chrome`). Every console
//! error, uncaught exception and failed load (a refused script, a 404, a
//! Content-Security-Policy violation) is collected, and the tests assert
//! there is none; [`Tab::axe`] runs axe-core, the accessibility checker,
//! in the page.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use headless_chrome::browser::tab::Tab as ChromeTab;
use headless_chrome::protocol::cdp::Runtime::ConsoleAPICalledEventTypeOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser as Chrome, LaunchOptions};
use serde_json::Value;

use crate::support::repo;

/// Where Debian's package puts Chromium (`.ci/run` installs it).
const CHROMIUM: &str = "/usr/bin/chromium";

/// axe-core as `npm ci` in `tests/browser` installs it (`.ci/run` does).
fn axe_source() -> String {
    let path = repo().join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the accessibility check needs axe-core ({}: {e}); install it with \
             `npm ci --prefix tests/browser`",
            path.display()
        )
    })
}

/// A headless Chromium.
pub(crate) struct Browser {
    chrome: Chrome,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and no network but loopback's.
    pub(crate) fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "the dashboards' tests drive Debian's Chromium at {CHROMIUM}: \
             `apt-get install chromium` (.ci/run does)"
        );
        let profile = tempfile::tempdir().expect("a profile directory");
        let args: Vec<&std::ffi::OsStr> = [
            "--disable-quic",
            "--disable-component-update",
            "--no-default-browser-check",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
        let options = LaunchOptions {
            headless: true,
            sandbox: false,
            path: Some(PathBuf::from(CHROMIUM)),
            user_data_dir: Some(profile.path().to_path_buf()),
            window_size: Some((1280, 900)),
            // The test services' certificates come from a CA made for the
            // test run, on 127.0.0.1 only.
            ignore_certificate_errors: true,
            idle_browser_timeout: Duration::from_secs(300),
            args,
            ..LaunchOptions::default()
        };
        let chrome = Chrome::new(options).expect("starting headless Chromium");
        Browser {
            chrome,
            _profile: profile,
        }
    }

    /// A new tab, its console watched.
    pub(crate) fn tab(&self) -> Tab {
        let tab = self.chrome.new_tab().expect("a new tab");
        tab.set_default_timeout(Duration::from_secs(30));
        tab.enable_runtime().expect("the Runtime domain");
        tab.enable_log().expect("the Log domain");
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let error = match event {
                Event::RuntimeExceptionThrown(e) => Some(format!(
                    "uncaught exception: {}",
                    e.params.exception_details.text
                )),
                Event::RuntimeConsoleAPICalled(e)
                    if e.params.Type == ConsoleAPICalledEventTypeOption::Error =>
                {
                    Some(format!(
                        "console.error: {:?}",
                        e.params
                            .args
                            .iter()
                            .map(|a| a.value.clone())
                            .collect::<Vec<_>>()
                    ))
                }
                Event::LogEntryAdded(e)
                    if format!("{:?}", e.params.entry.level).eq_ignore_ascii_case("error") =>
                {
                    Some(format!(
                        "{} ({})",
                        e.params.entry.text,
                        e.params.entry.url.clone().unwrap_or_default()
                    ))
                }
                _ => None,
            };
            if let Some(error) = error {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(error);
            }
        }))
        .expect("a console listener");
        Tab { tab, errors }
    }
}

/// A tab.
pub(crate) struct Tab {
    tab: Arc<ChromeTab>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Tab {
    /// Opens `url` and waits for it to load.
    pub(crate) fn open(&self, url: &str) {
        self.tab
            .navigate_to(url)
            .and_then(|t| t.wait_until_navigated())
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The page's current URL.
    pub(crate) fn url(&self) -> String {
        self.eval_string("location.href")
    }

    /// Runs `expression` (which must give a string) and returns it.
    pub(crate) fn eval_string(&self, expression: &str) -> String {
        let result = self
            .tab
            .evaluate(expression, true)
            .unwrap_or_else(|e| panic!("evaluating {expression}: {e}"));
        match result.value {
            Some(Value::String(s)) => s,
            other => panic!("{expression} gave {other:?}"),
        }
    }

    /// The text of the page's main part.
    pub(crate) fn main_text(&self) -> String {
        self.eval_string("document.querySelector('main').innerText")
    }

    /// Clicks the element `selector` and waits for the page it leads to
    /// (every form and link here leads to another URL), loaded.
    pub(crate) fn click_and_wait(&self, selector: &str) {
        let before = self.url();
        let element = self
            .tab
            .wait_for_element(selector)
            .unwrap_or_else(|e| panic!("no {selector} on {before}: {e}"));
        element
            .scroll_into_view()
            .and_then(|e| e.click())
            .unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
        let started = std::time::Instant::now();
        loop {
            if self.url() != before && self.eval_string("document.readyState") == "complete" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "clicking {selector} on {before} led nowhere"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the main part's text contains `needle` (live updates).
    pub(crate) fn wait_for_text(&self, needle: &str, within: Duration) -> String {
        let started = std::time::Instant::now();
        loop {
            let text = self.main_text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                started.elapsed() < within,
                "{} never showed {needle:?}; it shows:\n{text}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The browser's cookie named `name` (an `HttpOnly` one too): what an
    /// attacker that stole it would hold.
    pub(crate) fn cookie(&self, name_prefix: &str) -> (String, String) {
        let cookies = self.tab.get_cookies().expect("the cookies");
        cookies
            .into_iter()
            .find(|c| c.name.starts_with(name_prefix))
            .map(|c| (c.name, c.value))
            .unwrap_or_else(|| panic!("no cookie named {name_prefix}*"))
    }

    /// The console errors so far (and forgets them).
    pub(crate) fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Asserts the page logged no error since the last check.
    pub(crate) fn assert_no_console_errors(&self) {
        let errors = self.take_errors();
        assert!(errors.is_empty(), "{}: {errors:#?}", self.url());
    }

    /// Runs axe-core's WCAG 2 A and AA rules on the page; the violations,
    /// as `rule: what (targets)`.
    pub(crate) fn axe(&self) -> Vec<String> {
        // Loaded through the DevTools protocol, so the page's own
        // Content-Security-Policy (scripts from its origin only) stays on.
        self.tab
            .evaluate(&axe_source(), false)
            .expect("loading axe-core");
        let json = self.eval_string(
            "axe.run(document, { runOnly: { type: 'tag', values: \
             ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })\
             .then(r => JSON.stringify(r.violations.map(v => ({ id: v.id, help: v.help, \
             nodes: v.nodes.map(n => n.target.join(' ')) }))))",
        );
        let violations: Vec<Value> = serde_json::from_str(&json).expect("axe's JSON");
        violations
            .iter()
            .map(|v| format!("{}: {} ({})", v["id"], v["help"], v["nodes"]))
            .collect()
    }

    /// Asserts axe-core finds no violation.
    pub(crate) fn assert_accessible(&self) {
        let violations = self.axe();
        assert!(violations.is_empty(), "{}: {violations:#?}", self.url());
    }

    /// Saves a PNG of the page into `$C2SSI_SCREENSHOTS/NAME.png` when that
    /// variable names a directory (`scripts/screenshots.sh` sets it to
    /// `docs/screenshots`).
    pub(crate) fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("C2SSI_SCREENSHOTS") else {
            return;
        };
        let png = self
            .tab
            .capture_screenshot(
                headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png,
                None,
                None,
                true,
            )
            .expect("a screenshot");
        let path = PathBuf::from(dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Opens `url` with scripts turned off and returns the main part's
    /// text, as a reader without JavaScript sees it.
    pub(crate) fn text_without_javascript(&self, url: &str) -> String {
        use headless_chrome::protocol::cdp::Emulation::SetScriptExecutionDisabled;
        self.tab
            .call_method(SetScriptExecutionDisabled { value: true })
            .expect("scripts off");
        self.open(url);
        let html = self.tab.get_content().expect("the page's HTML");
        self.tab
            .call_method(SetScriptExecutionDisabled { value: false })
            .expect("scripts on");
        html
    }
}
