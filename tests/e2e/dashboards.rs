//! The dashboards in a real browser (headless Chromium), against the real
//! processes: pages load without console errors, pass axe-core's WCAG A/AA
//! rules, read without JavaScript, and what is done there takes effect.

use std::time::Duration;

use crate::browser::Browser;
use crate::support::{Service, run_ok, start_server, wallets};

/// The owner's dashboard: a consent accepted in `wallet ui` lets the agent
/// run the collective's next task; the access, the receipt and the privacy
/// spent then show there; a refused token or a forged form changes nothing.
pub(crate) fn a_consent_accepted_in_wallet_ui_lets_the_agent_run_the_next_task() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "u", 80, 5);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let agents: Vec<_> = people.iter().map(|w| w.agent()).collect();
    // A new algorithm: every wallet holds the new manifest as pending.
    let elm = service.add_algorithm_pending_in(test_guest_artifacts::ELM_RIDGE, &people);
    // Four owners consent on the command line; the fifth in the browser.
    for w in &people[1..] {
        w.consent(&service.collective);
    }
    let owner = &people[0];
    let (_ui, login) = start_server(owner.command(&["ui"]), "wallet ui");
    // A loopback address of its own (127.a.b.c on Linux).
    assert!(login.starts_with("http://127."), "{login}");
    let origin = login.split("/login").next().expect("an origin").to_string();

    let browser = Browser::start();
    let tab = browser.tab();
    tab.open(&login);
    assert_eq!(tab.url(), format!("{origin}/"), "the login link leads home");
    let home = tab.main_text();
    assert!(home.contains("waiting for your consent"), "{home}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("wallet-overview");

    // The spent link signs nobody else in.
    let again = ureq::get(&login).call();
    assert!(
        matches!(again, Err(ureq::Error::StatusCode(403))),
        "{again:?}"
    );

    tab.open(&format!("{origin}/collectives"));
    let text = tab.main_text();
    assert!(text.contains("waits for your consent"), "{text}");
    assert!(
        text.contains("elm-ridge"),
        "the change names the new algorithm: {text}"
    );
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("wallet-consent");

    // Nothing of the collective runs in this wallet before the click: a job
    // needing all five wallets releases no round.
    let job = service.train_with(&elm, &["label=progression"], (1, 5), "1", 60_000);
    std::thread::sleep(Duration::from_secs(2));
    assert!(owner.log().is_empty(), "{:#?}", owner.log());

    // Attacks on the running dashboard, each with the stolen session cookie
    // and the page's own CSRF token where it helps: a form without the
    // token, one from another origin, one the browser marks as cross-site,
    // one addressed to another host name (DNS rebinding). Each is refused,
    // and the consent still waits.
    let (name, value) = tab.cookie("c2ssi_session_");
    let csrf = tab.eval_string("document.querySelector(\"input[name='csrf']\").value");
    let digest = tab.eval_string("document.querySelector(\"input[name='digest']\").value");
    let address = origin.trim_start_matches("http://").to_string();
    let path = format!("/collectives/{}/accept", service.collective);
    let cookie = format!("{name}={value}");
    for (what, host, extra, body, expected) in [
        (
            "no CSRF token",
            address.as_str(),
            "",
            format!("digest={digest}"),
            403,
        ),
        (
            "another origin",
            address.as_str(),
            "Origin: http://evil.example\r\n",
            format!("csrf={csrf}&digest={digest}"),
            403,
        ),
        (
            "a cross-site page",
            address.as_str(),
            "Sec-Fetch-Site: cross-site\r\n",
            format!("csrf={csrf}&digest={digest}"),
            403,
        ),
        (
            "a rebound host name",
            "evil.example",
            "",
            format!("csrf={csrf}&digest={digest}"),
            421,
        ),
    ] {
        let status = raw_post(&address, host, &path, &cookie, extra, &body);
        assert_eq!(status, expected, "{what}");
    }
    let out = run_ok(&mut owner.command(&["subscriptions"]));
    assert!(out.contains("PENDING"), "nothing was consented to: {out}");
    #[cfg(target_os = "linux")]
    assert!(
        !login.starts_with("http://127.0.0.1:"),
        "on Linux a dashboard has a loopback address of its own: {login}"
    );

    tab.click_and_wait("form[action$='/accept'] button");
    let done = tab.main_text();
    assert!(done.contains("You consented"), "{done}");
    assert!(!done.contains("waits for your consent"), "{done}");
    tab.assert_no_console_errors();

    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(status["rounds_done"], 1, "{status:#}");
    let log = owner.log();
    assert!(
        log.iter().any(|r| r["outcome"]["kind"] == "trained"),
        "the owner's wallet ran the task after the consent: {log:#?}"
    );

    // The access log, the earnings and the privacy spent show it; the
    // earnings page refreshes itself (no reload) until the receipt is kept.
    tab.open(&format!("{origin}/log"));
    let text = tab.wait_for_text("trained", Duration::from_secs(30));
    assert!(text.contains(&job), "{text}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("wallet-log");
    tab.open(&format!("{origin}/earnings"));
    tab.wait_for_text("signature ok", Duration::from_secs(60));
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("wallet-earnings");
    tab.open(&format!("{origin}/privacy"));
    let text = tab.main_text();
    assert!(text.contains(&service.collective), "{text}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("wallet-privacy");
    tab.open(&format!("{origin}/data"));
    tab.assert_accessible();
    tab.open(&format!("{origin}/data/diabetes"));
    let text = tab.main_text();
    assert!(
        text.contains("Values are not shown unless you ask"),
        "{text}"
    );
    tab.click_and_wait("form[action='/data/diabetes'] button");
    let text = tab.main_text();
    assert!(text.contains("shown at your request"), "{text}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("wallet-table");
    // A table that is not there: a page that says so (a 404, which the
    // console reports as a failed load).
    tab.open(&format!("{origin}/data/nope"));
    let text = tab.main_text();
    assert!(text.contains("nope"), "{text}");
    let errors = tab.take_errors();
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains("404")),
        "{errors:#?}"
    );

    // The broker's status page, and every server's metrics.
    tab.open(&format!("{}/status", service.url));
    let text = tab.main_text();
    assert!(text.contains("reachable"), "{text}");
    assert!(!text.contains("unreachable"), "{text}");
    assert!(!text.contains(&service.collective), "{text}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("broker-status");
    // The metrics are for the bearer of each server's token (made in its
    // data directory at start): without it, 401.
    let fetch = |token: &str| {
        tab.eval_string(&format!(
            "fetch('/metrics', {{ headers: {{ Authorization: 'Bearer {token}' }} }})\
             .then(r => r.text())"
        ))
    };
    let token = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("metrics.token"))
            .expect("the metrics token file")
            .trim()
            .to_string()
    };
    let refused = tab.eval_string("fetch('/metrics').then(r => String(r.status))");
    assert_eq!(refused, "401");
    let metrics = fetch(&token(&service.data));
    for line in ["c2ssi_access_reports_total 5", "c2ssi_aggregator_up 1"] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    tab.open(&format!("{}/health", service.aggregator_url));
    let metrics = fetch(&token(&service.aggregator_data));
    // The refused fetch is the only console error here, but for the icon
    // a browser asks of the aggregator, which serves JSON and no icon.
    let errors = tab.take_errors();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("401")
                || e.contains(&format!("{}/favicon.ico", service.aggregator_url))),
        "{errors:#?}"
    );
    assert!(
        metrics.contains("c2ssi_updates_total{outcome=\"taken\"} 5"),
        "{metrics}"
    );

    // Without JavaScript every page still reads.
    let html = tab.text_without_javascript(&format!("{origin}/log"));
    assert!(html.contains("trained"), "{html}");
    drop(agents);
}

/// The operator's dashboard: a job started from the page runs, its chart
/// gains a point each time a round is released, without a reload, the stop
/// button stops it, the model versions show as a chain and the ledger
/// verifies.
pub(crate) fn a_job_started_from_collective_ui_runs_and_its_chart_grows_live() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "c", 100, 5);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let agents: Vec<_> = people.iter().map(|w| w.agent()).collect();
    // The test paces the job: agents paused (SIGSTOP) and resumed, so that
    // the page is looked at between rounds, whatever this machine's speed.
    let pause = || agents.iter().for_each(|a| a.signal("STOP"));
    let resume = || agents.iter().for_each(|a| a.signal("CONT"));
    let (_ui, login) = start_server(service.operator(&["ui"]), "collective ui");
    let origin = login.split("/login").next().expect("an origin").to_string();

    let browser = Browser::start();
    let tab = browser.tab();
    tab.open(&login);
    let home = tab.main_text();
    assert!(home.contains("5\nsubscribers"), "{home}");
    let points = tab.eval_string(
        "document.getElementById('chart-subscribers').getAttribute('data-points') || ''",
    );
    assert!(points.parse::<u32>().is_ok_and(|n| n >= 1), "{points}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("collective-overview");

    // Start a job from the form: ten rounds of all five wallets (the most
    // the manifest lets one wallet take part in), the agents paused.
    pause();
    tab.eval_string(
        "(() => { const set = (id, v) => { document.getElementById(id).value = v; };\
         set('params', 'label=progression learning_rate=0.1 epochs=1'); set('rounds', '10');\
         set('wallets_per_round', '5'); set('deadline_ms', '60000'); set('budget', '1');\
         set('momentum', '0'); return 'ok'; })()",
    );
    let sent = tab.eval_string(
        "new URLSearchParams(new FormData(document.querySelector(\"form[action='/jobs']\"))).toString()",
    );
    tab.click_and_wait("form[action='/jobs'] button");
    let url = tab.url();
    let job = url
        .split("/jobs/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .unwrap_or_else(|| panic!("the form leads to the job's page: {url}"))
        .to_string();
    assert!(job.starts_with("j-"), "{url}");
    tab.assert_no_console_errors();
    // The same form sent again (a double click, a reload) starts no second job.
    let again = tab.eval_string(&format!(
        "fetch('/jobs', {{ method: 'POST', headers: {{ 'Content-Type': \
         'application/x-www-form-urlencoded' }}, body: '{sent}' }})\
         .then(r => r.text().then(t => r.status + ' ' + t))"
    ));
    assert!(
        again.starts_with("422") && again.contains("sent already"),
        "{}",
        again.get(..300).unwrap_or(&again)
    );
    let jobs = service
        .client()
        .jobs(&service.collective)
        .expect("the jobs");
    assert_eq!(jobs.len(), 1, "one job, not two");
    tab.take_errors();

    // The chart gains a point each time a round is released, without a
    // reload (a marker set in the page survives): the agents run until the
    // broker has released one more round, and are paused again.
    tab.eval_string("(() => { window.c2ssiMarker = 'kept'; return 'ok'; })()");
    let points = || {
        tab.eval_string(
            "document.getElementById('chart-rounds').getAttribute('data-points') || '0'",
        )
        .parse::<u64>()
        .unwrap_or(0)
    };
    let released = || service.status(&job)["rounds_done"].as_u64().unwrap_or(0);
    for _ in 0..2 {
        let before = released();
        resume();
        let started = std::time::Instant::now();
        while released() == before {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "no round released"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pause();
        let now = released();
        let started = std::time::Instant::now();
        while points() != now {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the chart shows {} points, the broker released {now} rounds:\n{}",
                points(),
                tab.main_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(tab.eval_string("window.c2ssiMarker || 'reloaded'"), "kept");
    let canvases =
        tab.eval_string("String(document.querySelectorAll('#chart-rounds canvas').length)");
    assert_eq!(canvases, "1", "uPlot drew the chart");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("collective-job");

    // Stop it from the page, signed by the collective as `collective stop`
    // signs it: the agents are paused, so the job is still running.
    assert_eq!(service.status(&job)["state"], "running");
    tab.click_and_wait("form[action$='/stop'] button");
    assert!(tab.main_text().contains("stops after its current round"));
    resume();
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "stopped", "{status:#}");

    tab.open(&format!("{origin}/models"));
    let text = tab.main_text();
    assert!(text.contains(&job) && text.contains("from"), "{text}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("collective-models");

    tab.open(&format!("{origin}/ledger"));
    tab.click_and_wait("form[action='/ledger/verify'] button");
    let text = tab.main_text();
    assert!(text.contains("The ledger verifies"), "{text}");
    tab.assert_no_console_errors();
    tab.assert_accessible();
    tab.screenshot("collective-ledger");

    // A job the broker does not have: a page that says so, with its 404.
    tab.open(&format!("{origin}/jobs/j-0000000000000000"));
    let text = tab.main_text();
    assert!(text.contains("Something went wrong"), "{text}");
    let errors = tab.take_errors();
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains("404")),
        "{errors:#?}"
    );

    // Reading works without JavaScript: the rounds are in the page.
    let html = tab.text_without_javascript(&format!("{origin}/jobs/{job}"));
    assert!(html.contains("released"), "{html}");
    drop(agents);
}

/// Sends a raw HTTP/1.1 POST of a form to the server at `address`, with
/// the `Host` header `host` and the extra header lines `extra`; its status.
fn raw_post(address: &str, host: &str, path: &str, cookie: &str, extra: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connecting");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{extra}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("sending");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reading");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}
