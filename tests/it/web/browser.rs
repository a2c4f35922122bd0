//! The discovery page in a real browser: Debian's chromium, driven over WebDriver (chromedriver on
//! a free loopback port), against the real `registry-db serve` on both stores, with a real
//! `docker-registry` to check. Searches by tag (typed into the form, and live as one types), pages
//! past the first page, opens a registry and presses "check now", loads hostile entries and checks
//! that nothing in them ran, audits both pages with axe-core, and browses with JavaScript off. The
//! health history (90-day bar, uptime table, cards' uptime, least-uptime search) on a history made
//! in-process on a test's clock, light and dark.
//!
//! Screenshots of the list and of a registry page, narrow (390 px) and wide (1280 px), go to
//! `$REGISTRY_DB_SCREENSHOTS` when set (that is how `docs/screenshot-*.png` are made), else to a
//! temporary folder.
//!
//! Needs `chromium` and `chromium-driver` (Debian) and `npm ci` (axe-core); `scripts/test.sh`
//! installs them. Chromium would try to reach the internet, so this runs only inside the
//! loopback-only namespace.

use crate::support;
use crate::support::oci_registry;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_registry::{Mode, OciRegistry};
use serde_json::{Value, json};
use support::{ROOT, Server, dynalite, start_server};
use thirtyfour::prelude::*;

const PAGE_SIZE: usize = registry_db::web::PAGE_SIZE;

/// chromedriver on a free loopback port; killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}); install it: apt-get install -y chromium chromium-driver (./scripts/test.sh does)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A fresh headless chromium with its own empty profile.
    async fn browser(&self, profile: &Path, javascript: bool) -> WebDriver {
        self.browser_with(profile, javascript, &[]).await
    }

    /// [`browser`](Self::browser) with more command-line switches.
    async fn browser_with(&self, profile: &Path, javascript: bool, extra: &[&str]) -> WebDriver {
        let mut caps = DesiredCapabilities::chrome();
        for arg in extra {
            caps.add_arg(arg).unwrap();
        }
        caps.set_binary("/usr/bin/chromium").unwrap();
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.display()),
        ] {
            caps.add_arg(arg).unwrap();
        }
        if !javascript {
            caps.add_experimental_option(
                "prefs",
                json!({"profile.managed_default_content_settings.javascript": 2}),
            )
            .unwrap();
        }
        WebDriver::new(&self.url, caps)
            .await
            .expect("start chromium through chromedriver")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, for at most 10 s.
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The card names on the current list page, sorted.
async fn card_names(driver: &WebDriver) -> Vec<String> {
    try_card_names(driver).await.unwrap()
}

async fn try_card_names(driver: &WebDriver) -> WebDriverResult<Vec<String>> {
    let mut names = Vec::new();
    for card in driver.find_all(By::Css(".card h3")).await? {
        names.push(card.text().await?);
    }
    names.sort();
    Ok(names)
}

async fn wait_for_cards(driver: &WebDriver, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // The page may be replaced while it is read (live search, navigation): read it again then.
        last = try_card_names(driver).await.unwrap_or_default();
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cards: expected {expected:?}, got {last:?}");
}

/// Text with every run of whitespace (tabs between cells, breaks between flex items) as one space.
fn norm(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn url(driver: &WebDriver) -> String {
    driver.current_url().await.unwrap().to_string()
}

const XSS_NAME: &str = "<script>window.__xss='name';document.title='pwned'</script>\u{202E}gnp.exe";

/// Hostile entries: every string a visitor sees tries to run script.
fn hostile_entries() -> Vec<Value> {
    vec![
        json!({
            "container_registry_id": "xss1",
            "container_registry_name": XSS_NAME,
            "container_registry_public_url": "http://10.0.0.9:5000",
            "container_registry_image_prefix": "\"><img src=x onerror=\"window.__xss='prefix'\">",
            "container_registry_tags": ["xss", "\"><img src=x onerror=\"window.__xss='tag'\">", "javascript:window.__xss='js-tag'"],
            "container_registry_metadata": {
                "<img src=x onerror=\"window.__xss='key'\">": "javascript:window.__xss='value'",
                "owner\u{202E}": "\u{202E}evil-team",
            },
            "container_registry_config": {"auth_required": true, "note": "</td></tr></table><script>window.__xss='config'</script>"},
        }),
        json!({
            "container_registry_id": "xss2",
            "container_registry_name": "\"><svg onload=\"window.__xss='svg'\">",
            "container_registry_public_url": "https://registry.example.com/\"><script>window.__xss='url'</script>",
            "container_registry_tags": ["xss"],
        }),
    ]
}

async fn post(client: &reqwest::Client, base: &str, body: &Value) {
    let res = client
        .post(format!("{base}/container_registry"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        res.text().await.unwrap()
    );
}

/// The listing every run starts from: `live` is an open registry, `secure` one that asks for
/// credentials, `gone` a closed port.
async fn seed(base: &str, live_registry: &str, secure_registry: &str) {
    let client = reqwest::Client::new();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (id, name, url, tags) in [
        (
            "secure",
            "secure-releases",
            secure_registry.to_string(),
            json!(["demo", "releases"]),
        ),
        (
            "gone",
            "old-mirror",
            format!("http://{closed}"),
            json!(["demo", "mirror"]),
        ),
    ] {
        post(
            &client,
            base,
            &json!({
                "container_registry_id": id,
                "container_registry_name": name,
                "container_registry_public_url": url,
                "container_registry_tags": tags,
                "container_registry_storage_info": {"storage_type": "fs", "registry_type": "aios"},
            }),
        )
        .await;
        // Checked through the API before the browser comes: the list shows their verdicts.
        client
            .get(format!("{base}/check_container_health/{id}"))
            .send()
            .await
            .unwrap();
    }
    let mut seed_entry = support::seed_entry();
    seed_entry["container_registry_tags"] =
        json!(["ai", "training", "internal", "fast-pull", "demo"]);
    post(&client, base, &seed_entry).await;
    post(
        &client,
        base,
        &json!({
            "container_registry_id": "live",
            "container_registry_name": "team-builds",
            "container_registry_public_url": live_registry,
            "container_registry_tags": ["demo", "ci", "internal"],
            "container_registry_metadata": {"owner": "platform-team", "environment": "staging", "region": "eu-central-1"},
            "container_registry_config": {"mirror_enabled": true},
            "container_registry_storage_info": {"storage_type": "fs", "storage_size": 51200, "memory_size": 2048, "registry_type": "aios"},
        }),
    )
    .await;
    post(
        &client,
        base,
        &json!({
            "container_registry_id": "dockerhub",
            "container_registry_name": "Docker Hub",
            "container_registry_public_url": "https://registry-1.docker.io",
            "container_registry_image_prefix": "docker.io",
            "container_registry_tags": ["demo", "public", "mirror"],
            "container_registry_storage_info": {"storage_type": "object-store", "registry_type": "external"},
        }),
    )
    .await;
    for (id, name, tags) in [
        ("gpu-a", "gpu-cluster-a", json!(["gpu", "ai", "demo"])),
        ("gpu-b", "gpu-cluster-b", json!(["gpu", "demo"])),
    ] {
        post(
            &client,
            base,
            &json!({
                "container_registry_id": id,
                "container_registry_name": name,
                "container_registry_public_url": format!("https://{id}.registry.example.com"),
                "container_registry_tags": tags,
                "container_registry_storage_info": {"storage_type": "s3", "registry_type": "aios"},
            }),
        )
        .await;
    }
    for i in 0..PAGE_SIZE + 5 {
        post(
            &client,
            base,
            &json!({
                "container_registry_id": format!("bulk-{i:03}"),
                "container_registry_name": format!("bulk-{i:03}"),
                "container_registry_public_url": format!("http://10.1.0.{}:5000", i + 1),
                "container_registry_tags": ["bulk"],
            }),
        )
        .await;
    }
    for e in hostile_entries() {
        post(&client, base, &e).await;
    }
}

/// Nothing injected ran: no flag, no title change, no element the entries tried to create.
async fn assert_nothing_ran(driver: &WebDriver, page: &str) {
    let state = driver
        .execute(
            "return {xss: window.__xss === undefined ? null : String(window.__xss), title: document.title, \
             injected: document.querySelectorAll('img, svg, iframe, object, embed, script:not([src])').length, \
             scripts: Array.from(document.scripts).map(s => s.src)};",
            vec![],
        )
        .await
        .unwrap();
    let state = state.json();
    assert_eq!(
        state["xss"],
        Value::Null,
        "{page}: injected script ran: {state}"
    );
    // Had the name's script run, the title would be exactly "pwned" (it may contain the word as text).
    assert_ne!(state["title"], "pwned", "{page}: {state}");
    assert_eq!(state["injected"], 0, "{page}: {state}");
    let scripts = state["scripts"].as_array().unwrap();
    assert_eq!(scripts.len(), 1, "{page}: only our own script: {state}");
    assert!(scripts[0].as_str().unwrap().contains("/assets/app.js?v="));
}

/// axe-core in the page; fails on serious or critical violations.
async fn audit(driver: &WebDriver, page: &str) {
    let axe = std::fs::read_to_string(format!("{ROOT}/node_modules/axe-core/axe.min.js"))
        .expect("node_modules/axe-core/axe.min.js: run `npm ci` (./scripts/test.sh does)");
    driver.execute(axe, vec![]).await.unwrap();
    let result = driver
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done({passes: r.passes.length, violations: r.violations.map(v => ({id: v.id,
               impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))}))
               .catch(e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let result = result.json();
    let violations = result["violations"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{page}: axe did not run: {result}"));
    // Rules that found something to check and passed: proof that the audit looked at the page.
    let passes = result["passes"].as_u64().unwrap_or(0);
    assert!(passes > 10, "{page}: axe checked only {passes} rules");
    let bad: Vec<&Value> = violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(bad.is_empty(), "{page}: axe: {bad:#?}");
    println!(
        "{page}: axe: {passes} rules passed, {} minor/moderate findings: {violations:?}",
        violations.len()
    );
}

async fn shoot(driver: &WebDriver, dir: &Path, name: &str, width: u32, height: u32) {
    driver.set_window_rect(0, 0, width, height).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    driver.screenshot(&dir.join(name)).await.unwrap();
}

/// Everything a visitor with JavaScript does, against one running server.
async fn with_javascript(driver: &WebDriver, base: &str, store: &str, shots: Option<&Path>) {
    // Search by a tag typed into the form.
    driver.goto(format!("{base}/")).await.unwrap();
    assert_eq!(
        driver.title().await.unwrap(),
        "Registries · container-registry-db"
    );
    let all = card_names(driver).await.len();
    assert_eq!(all, PAGE_SIZE, "{store}: a full first page");
    driver
        .find(By::Id("tag"))
        .await
        .unwrap()
        .send_keys("gpu")
        .await
        .unwrap();
    driver
        .find(By::Css("#search button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_cards(driver, &["gpu-cluster-a", "gpu-cluster-b"]).await;
    assert!(
        url(driver).await.ends_with("/?tag=gpu"),
        "{}",
        url(driver).await
    );
    // The facets count the result: both gpu registries are aios on s3.
    let facets = norm(
        &driver
            .find(By::Id("facets"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(facets.contains("gpu 2"), "{store}: {facets}");
    assert!(facets.contains("ai 1"), "{store}: {facets}");

    // Live: typing in the name box narrows the results without a submit, and the URL follows.
    driver
        .find(By::Id("q"))
        .await
        .unwrap()
        .send_keys("cluster-b")
        .await
        .unwrap();
    wait_for_cards(driver, &["gpu-cluster-b"]).await;
    let live_url = url(driver).await;
    assert!(
        live_url.contains("q=cluster-b") && live_url.contains("tag=gpu"),
        "{live_url}"
    );
    // Back goes to the search before, the form included.
    driver.back().await.unwrap();
    wait_for_cards(driver, &["gpu-cluster-a", "gpu-cluster-b"]).await;
    let q = wait_for("the form to follow the URL", || async {
        let q = driver
            .find(By::Id("q"))
            .await
            .ok()?
            .prop("value")
            .await
            .ok()??;
        q.is_empty().then_some(q)
    })
    .await;
    assert_eq!(q, "");

    // Paging past the first page, following the cursor.
    driver.goto(format!("{base}/?tag=bulk")).await.unwrap();
    let mut seen = card_names(driver).await;
    assert_eq!(seen.len(), PAGE_SIZE, "{store}");
    driver
        .find(By::Id("next-page"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the second page", || async {
        url(driver).await.contains("cursor=").then_some(())
    })
    .await;
    let second = card_names(driver).await;
    assert_eq!(second.len(), 5, "{store}: {second:?}");
    assert!(
        driver
            .find_all(By::Id("next-page"))
            .await
            .unwrap()
            .is_empty()
    );
    seen.extend(second);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), PAGE_SIZE + 5, "{store}: every entry once");

    // Open a registry from the list and check it now.
    driver.goto(format!("{base}/?q=team-builds")).await.unwrap();
    driver
        .find(By::Css(".card h3 a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let h1 = wait_for("the registry page", || async {
        match driver.find(By::Css("h1")).await {
            Ok(h) => Some(h.text().await.unwrap()),
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(h1, "team-builds");
    assert!(url(driver).await.ends_with("/registries/live"));
    let badge = driver.find(By::Id("health-badge")).await.unwrap();
    assert_eq!(badge.text().await.unwrap(), "never checked");
    let pull = driver
        .find(By::Id("cmd-pull"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pull.starts_with("docker pull 127.0.0.1:"), "{pull}");
    assert!(pull.ends_with("/<image>:<tag>"), "{pull}");
    let about = driver
        .find(By::Css("article"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(about.contains("insecure-registries"), "plain HTTP note");
    assert!(
        driver
            .find(By::Css("button.copy"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    audit(driver, &format!("{store} registry page (never checked)")).await;

    driver
        .find(By::Css("#check-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the badge to turn healthy", || async {
        let text = driver
            .find(By::Id("health-badge"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.starts_with("healthy").then_some(())
    })
    .await;
    let status = driver
        .find(By::Id("check-status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("Checked at"), "{status}");
    let table = norm(
        &driver
            .find(By::Id("health-table"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(table.contains("API version registry/2.0"), "{table}");
    // Again within the service's cooldown: the stored result comes back, said to be one.
    driver
        .find(By::Css("#check-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let again = wait_for("the cached answer", || async {
        let text = driver
            .find(By::Id("check-status"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("not probed again").then_some(text)
    })
    .await;
    assert!(again.contains("(healthy)"), "{again}");
    // The result was stored: the server renders it on the next visit.
    driver.refresh().await.unwrap();
    let badge = driver
        .find(By::Id("health-badge"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(badge.starts_with("healthy"), "{badge}");
    audit(driver, &format!("{store} registry page")).await;

    // A registry that wants credentials shows how to log in to it.
    driver
        .goto(format!("{base}/registries/secure"))
        .await
        .unwrap();
    let badge = driver
        .find(By::Id("health-badge"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(badge.starts_with("needs credentials"), "{badge}");
    let login = driver
        .find(By::Id("cmd-login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.starts_with("docker login 127.0.0.1:"), "{login}");
    driver
        .goto(format!("{base}/?health=unreachable"))
        .await
        .unwrap();
    assert_eq!(card_names(driver).await, ["old-mirror"]);

    // Hostile entries render as text and run nothing.
    driver.goto(format!("{base}/?tag=xss")).await.unwrap();
    assert_eq!(
        card_names(driver).await,
        [
            "\"><svg onload=\"window.__xss='svg'\">".to_string(),
            XSS_NAME.to_string()
        ]
    );
    assert_nothing_ran(driver, "list of hostile entries").await;
    audit(driver, &format!("{store} list page")).await;
    for id in ["xss1", "xss2"] {
        driver
            .goto(format!("{base}/registries/{id}"))
            .await
            .unwrap();
        assert_nothing_ran(driver, id).await;
    }
    driver
        .goto(format!("{base}/registries/xss1"))
        .await
        .unwrap();
    assert_eq!(
        driver
            .find(By::Css("h1 bdi"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        XSS_NAME
    );
    let meta = driver
        .find(By::Css("section:nth-of-type(5)"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(meta.contains("javascript:window.__xss='value'"), "{meta}");
    let links = driver
        .execute(
            "return Array.from(document.querySelectorAll('main a')).map(a => [a.protocol, a.rel]);",
            vec![],
        )
        .await
        .unwrap();
    for link in links.json().as_array().unwrap() {
        assert!(
            matches!(link[0].as_str(), Some("http:" | "https:")),
            "{link}"
        );
    }
    // The one outside link is the registry's, marked as such.
    driver
        .goto(format!("{base}/registries/xss2"))
        .await
        .unwrap();
    let out = driver
        .find(By::Css("dd a[rel]"))
        .await
        .unwrap()
        .attr("rel")
        .await
        .unwrap();
    assert_eq!(out.as_deref(), Some("noopener nofollow"));
    assert_nothing_ran(driver, "xss2 again").await;

    if let Some(dir) = shots {
        driver.goto(format!("{base}/?tag=demo")).await.unwrap();
        shoot(driver, dir, "screenshot-list.png", 1280, 900).await;
        shoot(driver, dir, "screenshot-list-narrow.png", 390, 844).await;
        driver
            .goto(format!("{base}/registries/live"))
            .await
            .unwrap();
        shoot(driver, dir, "screenshot-registry.png", 390, 844).await;
        shoot(driver, dir, "screenshot-registry-wide.png", 1280, 900).await;
    }
}

/// A visitor without JavaScript: the form submits as a plain GET, facets and pages are links, and
/// "check now" shows the check endpoint's own answer.
async fn without_javascript(driver: &WebDriver, base: &str) {
    driver.goto(format!("{base}/")).await.unwrap();
    driver
        .find(By::Id("tag"))
        .await
        .unwrap()
        .send_keys("gpu")
        .await
        .unwrap();
    driver
        .find(By::Css("#search button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_cards(driver, &["gpu-cluster-a", "gpu-cluster-b"]).await;
    // The browser's own form encoding, every field present: no script rewrote it.
    let u = url(driver).await;
    assert!(u.contains("?q=&tag=gpu&registry_type="), "{u}");
    // A facet link narrows further.
    driver
        .find(By::Css("#facets a.facet[href*='tag=ai']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_cards(driver, &["gpu-cluster-a"]).await;
    driver.goto(format!("{base}/?tag=bulk")).await.unwrap();
    let first = card_names(driver).await;
    driver
        .find(By::Id("next-page"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the second page", || async {
        url(driver).await.contains("cursor=").then_some(())
    })
    .await;
    let second = card_names(driver).await;
    assert_eq!((first.len(), second.len()), (PAGE_SIZE, 5));
    assert!(
        second
            .iter()
            .all(|n| n.starts_with("bulk-") && !first.contains(n))
    );
    driver
        .goto(format!("{base}/registries/live"))
        .await
        .unwrap();
    // Copy buttons need script: they stay hidden.
    assert!(
        !driver
            .find(By::Css("button.copy"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    driver
        .find(By::Css("#check-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the check endpoint's answer", || async {
        let body = driver.source().await.ok()?;
        body.contains("\"status\":\"healthy\"").then_some(())
    })
    .await;
    let u = url(driver).await;
    assert!(u.contains("/check_container_health/live"), "{u}");
}

fn embedded_server(dir: &Path) -> Server {
    start_server(
        &["--data", dir.to_str().unwrap(), "--probe-allow-loopback"],
        &[],
    )
}

fn dynamodb_server() -> Server {
    let endpoint = dynalite();
    let table = format!("web-{}", std::process::id());
    start_server(
        &[
            "--store",
            "dynamodb",
            "--table",
            &table,
            "--create-table",
            "--probe-allow-loopback",
        ],
        &[
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_on_both_stores() {
    support::require_loopback_only_network();
    let registry = OciRegistry::start(Mode::Open);
    let secure = OciRegistry::start(Mode::htpasswd());
    let chromedriver = ChromeDriver::start();
    let tmp = tempfile::tempdir().unwrap();
    let shots: PathBuf = std::env::var_os("REGISTRY_DB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();

    let data = tmp.path().join("data");
    for store in ["embedded", "dynamodb"] {
        let server = match store {
            "embedded" => embedded_server(&data),
            _ => dynamodb_server(),
        };
        seed(&server.base, &registry.url, &secure.url).await;
        let profile = tempfile::tempdir().unwrap();
        let driver = chromedriver.browser(profile.path(), true).await;
        let shots = (store == "embedded").then_some(shots.as_path());
        with_javascript(&driver, &server.base, store, shots).await;
        driver.quit().await.unwrap();

        let profile = tempfile::tempdir().unwrap();
        let driver = chromedriver.browser(profile.path(), false).await;
        without_javascript(&driver, &server.base).await;
        driver.quit().await.unwrap();
    }
    for name in ["screenshot-list.png", "screenshot-registry.png"] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}");
    }
}

/// A screenshot of the registry page's health section.
async fn shoot_history(driver: &WebDriver, dir: &Path, name: &str, width: u32, height: u32) {
    driver.set_window_rect(0, 0, width, height).await.unwrap();
    driver
        .execute(
            "document.getElementById('history-h').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    driver.screenshot(&dir.join(name)).await.unwrap();
}

/// The registry page's 90-day bar, uptime table and text alternative, the cards' 30-day uptime and
/// the search's least uptime, in chromium, light and dark. The history is made in-process on a
/// test's clock (90 days of checks against a registry that is up, down or switched between), and
/// the page served by the same router on a loopback port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_history_in_chromium() {
    use registry_db::domain::catalog::{Catalog, CheckPolicy};
    use registry_db::domain::history::{Clock, ManualClock};
    use registry_db::state::AppState;

    support::require_loopback_only_network();
    let open = OciRegistry::start(Mode::Open);
    let closed = {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    };
    let (store, _dir) = support::embedded_store();
    let clock = ManualClock::at(chrono::Utc::now() - chrono::Duration::days(89));
    let catalog = Catalog::new(store, support::loopback_prober(2000))
        .with_check_policy(CheckPolicy {
            cooldown: Duration::ZERO,
            ..CheckPolicy::default()
        })
        .with_clock(std::sync::Arc::new(clock.clone()));
    for (id, name) in [("flaky", "Flaky registry"), ("steady", "Steady registry")] {
        catalog
            .create(
                json!({"container_registry_id": id, "container_registry_name": name,
                "container_registry_public_url": open.url, "container_registry_tags": ["ai"]}),
            )
            .await
            .unwrap();
    }
    let point = |url: &str| {
        let (catalog, url) = (catalog.clone(), url.to_string());
        async move {
            catalog
                .update(
                    "flaky",
                    &json!({"$set": {"container_registry_public_url": url}}),
                )
                .await
                .unwrap();
        }
    };
    // Day by day: mostly up, a partly down day every 13, a day down, five days without probes.
    let first = clock.today();
    for day in 0..90 {
        if (20..25).contains(&day) {
            clock.advance(chrono::Duration::days(1));
            continue;
        }
        let downs = match day {
            40 => 3,
            d if d % 13 == 5 => 1,
            _ => 0,
        };
        for probe in 0..3 {
            let down = probe < downs;
            point(if down { &closed } else { &open.url }).await;
            let _ = catalog.check_health("flaky").await.unwrap();
        }
        if day == 89 {
            catalog.check_health("steady").await.unwrap();
        }
        if day < 89 {
            clock.advance(chrono::Duration::days(1));
        }
    }
    assert_eq!(clock.today().0, first.0 + 89);
    let app = registry_db::router::router(AppState {
        catalog,
        write_token: None,
        access: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let chromedriver = ChromeDriver::start();
    let tmp = tempfile::tempdir().unwrap();
    let shots: PathBuf = std::env::var_os("REGISTRY_DB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let driver = chromedriver.browser(profile.path(), true).await;

    driver
        .goto(format!("{base}/registries/flaky"))
        .await
        .unwrap();
    let bar = driver.find(By::Id("history-bar")).await.unwrap();
    let marks = bar.find_all(By::Css("span")).await.unwrap();
    assert_eq!(marks.len(), 90);
    let class_of = |i: usize| {
        let mark = marks[i].clone();
        async move { mark.attr("class").await.unwrap().unwrap() }
    };
    assert_eq!(class_of(0).await, "d-up");
    assert_eq!(class_of(5).await, "d-half"); // 2 of 3 up
    assert_eq!(class_of(20).await, "d-none");
    assert_eq!(class_of(40).await, "d-down");
    let title = marks[40].attr("title").await.unwrap().unwrap();
    let day40 = registry_db::domain::history::Day(first.0 + 40).iso();
    assert!(
        title.starts_with(&format!("{day40}: 0 up of 3 probes")),
        "{title}"
    );
    assert_eq!(
        marks[22].attr("title").await.unwrap().unwrap(),
        format!(
            "{}: no probes",
            registry_db::domain::history::Day(first.0 + 22).iso()
        )
    );
    // The text alternative, read out for the bar and printed under it.
    let label = bar.attr("aria-label").await.unwrap().unwrap();
    // Days 5, 18, 31, 44, 57, 70, 83 are partly up; day 40 down; 20..25 without probes.
    assert_eq!(
        label,
        "Health over the last 90 days: 77 days fully up, 7 partly up, 1 down, 5 without probes; uptime 96 % over 90 days."
    );
    let text = driver
        .find(By::Id("history-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with(&label), "{text}");
    let rows = driver
        .find_all(By::Css("#uptime-table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let row = norm(&rows[2].text().await.unwrap());
    assert!(row.starts_with("90 days 96 % "), "{row}");
    assert!(row.contains(" ms"), "p50 and p95: {row}");
    audit(&driver, "registry page with history").await;
    shoot_history(&driver, &shots, "screenshot-history.png", 390, 844).await;
    shoot_history(&driver, &shots, "screenshot-history-wide.png", 1280, 900).await;

    // Cards show the 30-day uptime; the search asks for at least some.
    driver.goto(format!("{base}/")).await.unwrap();
    let cards = norm(
        &driver
            .find(By::Css(".cards"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(cards.contains("100 % up over 30 days"), "{cards}");
    driver.goto(format!("{base}/?min_uptime=99")).await.unwrap();
    wait_for_cards(&driver, &["Steady registry"]).await;
    let field = driver.find(By::Id("min_uptime")).await.unwrap();
    assert_eq!(field.value().await.unwrap().as_deref(), Some("99"));
    driver
        .goto(format!("{base}/?min_uptime=abc"))
        .await
        .unwrap();
    let body = driver
        .find(By::Tag("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("least uptime must be a percentage"), "{body}");
    audit(&driver, "list with a least uptime").await;
    driver.quit().await.unwrap();

    // Dark: the same page, axe on its colours too.
    let profile = tempfile::tempdir().unwrap();
    let dark = chromedriver
        .browser_with(
            profile.path(),
            true,
            &[
                "--force-dark-mode",
                "--blink-settings=preferredColorScheme=0",
            ],
        )
        .await;
    dark.goto(format!("{base}/registries/flaky")).await.unwrap();
    let scheme: bool = dark
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    assert!(scheme, "the browser prefers dark");
    audit(&dark, "registry page with history, dark").await;
    shoot_history(&dark, &shots, "screenshot-history-dark.png", 390, 844).await;
    dark.quit().await.unwrap();
    serving.abort();
    let png = std::fs::read(shots.join("screenshot-history.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}
