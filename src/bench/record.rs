//! What a run leaves behind to be compared later: its reports with the machine they ran on and
//! the settings they ran with (`--json`, read back by `seatflow bench compare`).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{BenchArgs, Report};

/// One `seatflow bench` run, as written by `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRun {
    /// The seatflow that loaded the server (the load generator's version).
    pub seatflow_version: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    pub machine: Machine,
    pub settings: Settings,
    /// The baseline first when it ran, the reservations last.
    pub reports: Vec<Report>,
}

impl BenchRun {
    pub fn new(args: &BenchArgs, started_at: std::time::SystemTime, reports: Vec<Report>) -> Self {
        Self {
            seatflow_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
            machine: Machine::this(),
            settings: Settings::of(args),
            reports,
        }
    }

    /// The reservations' report (every run has one, last).
    pub fn sale(&self) -> Option<&Report> {
        self.reports.iter().rev().find(|r| !r.is_baseline())
    }

    /// The baseline's report, when the run had one.
    pub fn baseline(&self) -> Option<&Report> {
        self.reports.iter().find(|r| r.is_baseline())
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not the JSON of a `seatflow bench --json` run",
                path.display()
            )
        })
    }
}

/// Where the run ran: the figures mean little without it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub cpus: u32,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
}

impl Machine {
    /// This machine, read from /proc and /etc (an unknown field stays empty elsewhere).
    pub fn this() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|line| {
                    let (key, value) = line.split_once([':', '='])?;
                    (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
                })
                .unwrap_or_default()
        };
        let memory_kib: f64 = field(&read("/proc/meminfo"), "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        Self {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu_model: field(&read("/proc/cpuinfo"), "model name"),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
            memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os: field(&read("/etc/os-release"), "PRETTY_NAME"),
        }
    }

    /// Name and value of each field, in order, for a table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("host", self.hostname.clone()),
            ("CPU", self.cpu_model.clone()),
            ("CPUs", self.cpus.to_string()),
            ("memory", format!("{} GiB", self.memory_gib)),
            ("kernel", self.kernel.clone()),
            ("OS", self.os.clone()),
        ]
    }
}

/// The settings of the run that shape its figures (never the token secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub url: String,
    pub requests: u64,
    pub connections: u32,
    pub sections: u32,
    pub rows: u32,
    pub seats_per_row: u32,
    pub max_seats: u32,
    pub wait_ms: u64,
    pub baseline: bool,
    pub hold_seconds: u32,
    /// The event's `maxSeatsPerUser` (`--max-seats-per-user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seats_per_user: Option<u32>,
    pub confirm_ratio: f64,
    pub waitlist: bool,
    /// Tokens signed for each user (`--token-secret`).
    pub signed_tokens: bool,
    pub abusive_clients: u32,
    pub subscribers: u32,
}

impl Settings {
    fn of(args: &BenchArgs) -> Self {
        Self {
            url: args.url.clone(),
            requests: args.requests,
            connections: args.connections,
            sections: args.sections,
            rows: args.rows,
            seats_per_row: args.seats_per_row,
            max_seats: args.max_seats,
            wait_ms: args.wait_ms,
            baseline: args.baseline,
            hold_seconds: args.hold_seconds,
            max_seats_per_user: args.max_seats_per_user,
            confirm_ratio: args.confirm_ratio,
            waitlist: args.waitlist,
            signed_tokens: args.token_secret.is_some(),
            abusive_clients: args.abusive_clients,
            subscribers: args.subscribers,
        }
    }

    /// Name and value of each setting, in order, for a table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("url", self.url.clone()),
            ("requests", self.requests.to_string()),
            ("connections", self.connections.to_string()),
            (
                "seats",
                format!(
                    "{} sections of {} x {}",
                    self.sections, self.rows, self.seats_per_row
                ),
            ),
            ("seats per request", format!("1 to {}", self.max_seats)),
            ("wait ms", self.wait_ms.to_string()),
            ("baseline", self.baseline.to_string()),
            ("hold seconds", self.hold_seconds.to_string()),
            (
                "max seats per user",
                self.max_seats_per_user
                    .map_or_else(|| "none".to_string(), |limit| limit.to_string()),
            ),
            ("confirm ratio", self.confirm_ratio.to_string()),
            ("waitlist", self.waitlist.to_string()),
            ("signed tokens", self.signed_tokens.to_string()),
            ("abusive clients", self.abusive_clients.to_string()),
            ("subscribers", self.subscribers.to_string()),
        ]
    }
}
