//! `seatflow bench --json/--report/--charts` and `seatflow bench compare` against a real
//! embedded server: the files say what the run did, and the page opens in a browser.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{free_port, seatflow, server_command, text};

/// An embedded seatflow on a port of its own, stopped when dropped.
struct Server {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let data = tempfile::tempdir().expect("dir");
        let port = free_port();
        let mut command = server_command(port, data.path());
        command.stdout(Stdio::null()).stderr(Stdio::null()).env(
            "SEATFLOW_METRICS_BIND",
            format!("127.0.0.1:{}", free_port()),
        );
        Self {
            child: command.spawn().expect("seatflow runs"),
            url: format!("http://127.0.0.1:{port}"),
            _data: data,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a small sale (bench waits until the server is ready) with the given extra arguments.
fn bench(server: &Server, requests: u32, extra: &[&str]) {
    let requests = requests.to_string();
    let mut args = vec![
        "bench",
        "--url",
        &server.url,
        "--requests",
        &requests,
        "--connections",
        "20",
        "--sections",
        "4",
        "--rows",
        "10",
        "--seats-per-row",
        "10",
    ];
    args.extend_from_slice(extra);
    let output = seatflow(&args, &[]);
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn answered(report: &serde_json::Value) -> u64 {
    report["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|second| second["answered"].as_u64().expect("answered"))
        .sum()
}

#[test]
fn a_run_is_written_as_json_and_drawn_on_a_page_that_opens_in_chromium() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("run.json");
    let html = dir.path().join("run.html");
    let charts = dir.path().join("charts");
    bench(
        &server,
        3_000,
        &[
            "--baseline",
            "--json",
            json.to_str().expect("utf-8"),
            "--report",
            html.to_str().expect("utf-8"),
            "--charts",
            charts.to_str().expect("utf-8"),
        ],
    );

    let run: serde_json::Value = serde_json::from_str(&read(&json)).expect("json");
    let reports = run["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 2, "{run}");
    assert!(
        reports[0]["target"]
            .as_str()
            .expect("target")
            .starts_with("baseline")
    );
    // Every request is in the second it was answered in, in both.
    assert_eq!(answered(&reports[0]), 3_000, "{run}");
    assert_eq!(answered(&reports[1]), 3_000, "{run}");
    // 400 seats, up to 4 a request: sold out, verified.
    assert_eq!(reports[1]["seats_sold"], 400, "{run}");
    assert_eq!(reports[1]["duplicate_seats"], 0);
    assert_eq!(run["settings"]["requests"], 3_000);
    assert_eq!(run["settings"]["connections"], 20);
    assert!(run["machine"]["cpus"].as_u64().expect("cpus") > 0, "{run}");

    let page = read(&html);
    assert_eq!(page.matches("<svg").count(), 4, "four charts");
    for words in [
        "Answers per second",
        "Latency P99 per second",
        "baseline (echo)",
        "verified",
        "400 seats sold of 400",
    ] {
        assert!(page.contains(words), "the page says {words:?}");
    }
    // Self-contained: nothing is fetched when it is opened.
    for outside in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!page.contains(outside), "the page holds {outside:?}");
    }
    for name in [
        "throughput.svg",
        "latency-p50.svg",
        "latency-p95.svg",
        "latency-p99.svg",
    ] {
        assert!(read(&charts.join(name)).starts_with("<svg"), "{name}");
    }

    // The same run drawn again later from its file.
    let again = dir.path().join("again.html");
    let output = seatflow(
        &[
            "bench",
            "show",
            json.to_str().expect("utf-8"),
            "--report",
            again.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("verified: true"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(read(&again).matches("<svg").count(), 4);

    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!(
            "SKIPPED the browser half: no chromium here (Debian's package `chromium`; ops/setup \
             installs it)"
        );
        return;
    };
    let profile = tempfile::tempdir().expect("dir");
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    let dom = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The browser built the same charts from the page: every SVG and every line of it.
    assert_eq!(dom.matches("<svg").count(), 4, "{dom}");
    assert_eq!(
        dom.matches("<polyline").count(),
        page.matches("<polyline").count(),
        "{dom}"
    );
    assert!(page.matches("<polyline").count() >= 8, "two lines a chart");
    assert!(dom.contains("Answers per second"));
}

#[test]
fn compare_prints_two_runs_side_by_side_and_draws_them() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let a = dir.path().join("before.json");
    let b = dir.path().join("after.json");
    bench(&server, 2_000, &["--json", a.to_str().expect("utf-8")]);
    bench(&server, 1_000, &["--json", b.to_str().expect("utf-8")]);
    let html = dir.path().join("compare.html");
    let output = seatflow(
        &[
            "bench",
            "compare",
            a.to_str().expect("utf-8"),
            b.to_str().expect("utf-8"),
            "--report",
            html.to_str().expect("utf-8"),
        ],
        &[],
    );
    let printed = text(&output.stdout);
    assert!(output.status.success(), "{printed}{}", text(&output.stderr));
    let header = printed.lines().nth(1).expect("a header");
    assert!(
        header.contains("before") && header.contains("after") && header.contains("b / a"),
        "{printed}"
    );
    // A row: its name in the first 18 columns, then a value a run.
    let row = |name: &str| {
        let line = printed
            .lines()
            .find(|line| line.get(..18).map(str::trim) == Some(name))
            .unwrap_or_else(|| panic!("no {name} row: {printed}"));
        line[18..]
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("verified"), ["yes", "yes"], "{printed}");
    assert_eq!(row("duplicate seats")[..2], ["0", "0"], "{printed}");
    // The settings that differ are named.
    assert_eq!(row("requests")[..2], ["2000", "1000"], "{printed}");

    let page = read(&html);
    assert_eq!(page.matches("<svg").count(), 4);
    // plotters writes a legend's text on a line of its own.
    assert!(
        page.lines().any(|l| l == "before") && page.lines().any(|l| l == "after"),
        "both in the legends"
    );
    assert!(page.contains("after / before"), "the ratio column");

    let not_a_run = dir.path().join("not-a-run.json");
    std::fs::write(&not_a_run, "[]").expect("write");
    let output = seatflow(
        &[
            "bench",
            "compare",
            a.to_str().expect("utf-8"),
            not_a_run.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not-a-run.json"),
        "{}",
        text(&output.stderr)
    );
}
