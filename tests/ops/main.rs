//! The operations artifacts. The Kubernetes manifests (k8s/): every overlay renders, every
//! object validates offline against the Kubernetes schemas in strict mode (`ops/k8s/validate`),
//! and the rules the operations depend on hold in every overlay — read from the rendered
//! objects, not from the files. The Prometheus alert rules (ops/prometheus): valid, and each
//! alert fired by its unit test (`promtool`, from Debian's prometheus package).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

#[path = "../support/embedded.rs"]
mod embedded;

const OVERLAYS: [&str; 2] = ["dev", "prod"];
const ROLES: [&str; 3] = [
    "seatflow-gateway",
    "seatflow-seat-processor",
    "seatflow-projector",
];

fn repo() -> std::path::PathBuf {
    // Read at run time: a test binary reused from another checkout must check this one.
    std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
}

fn render(overlay: &str) -> Vec<Value> {
    let output = Command::new(repo().join("ops/k8s/render"))
        .args([overlay, "--json"])
        .output()
        .expect("ops/k8s/render runs");
    assert!(
        output.status.success(),
        "{overlay} does not render: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON list of objects")
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn config(objects: &[Value]) -> HashMap<String, String> {
    serde_json::from_value(named(objects, "ConfigMap", "seatflow-config")["data"].clone())
        .expect("string data")
}

fn workloads(objects: &[Value]) -> impl Iterator<Item = &Value> {
    objects.iter().filter(|o| {
        matches!(
            o["kind"].as_str(),
            Some("Deployment" | "StatefulSet" | "Job" | "CronJob")
        )
    })
}

fn pod_spec(workload: &Value) -> &Value {
    if workload["kind"] == "CronJob" {
        &workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    } else {
        &workload["spec"]["template"]["spec"]
    }
}

/// Every container of ours (the `seatflow` image), with its workload's name.
fn seatflow_containers(objects: &[Value]) -> Vec<(String, &Value)> {
    workloads(objects)
        .flat_map(|w| {
            let name = w["metadata"]["name"].as_str().expect("name").to_owned();
            pod_spec(w)["containers"]
                .as_array()
                .expect("containers")
                .iter()
                .filter(|c| c["image"].as_str().is_some_and(|i| i.contains("seatflow")))
                .map(move |c| (name.clone(), c))
        })
        .collect()
}

#[test]
fn every_object_of_every_overlay_is_valid_kubernetes() {
    let output = Command::new(repo().join("ops/k8s/validate"))
        .output()
        .expect("ops/k8s/validate runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_role_has_a_disruption_budget_that_selects_its_pods() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        for role in ROLES.iter().copied().chain(["kafka"]) {
            let workload = workloads(&objects)
                .find(|w| w["metadata"]["name"] == role)
                .unwrap_or_else(|| panic!("{overlay}: no workload {role}"));
            let labels = &workload["spec"]["template"]["metadata"]["labels"];
            let budgets: Vec<&Value> = objects
                .iter()
                .filter(|o| o["kind"] == "PodDisruptionBudget")
                .filter(|pdb| {
                    pdb["spec"]["selector"]["matchLabels"]
                        .as_object()
                        .expect("matchLabels")
                        .iter()
                        .all(|(k, v)| labels[k] == *v)
                })
                .collect();
            assert_eq!(budgets.len(), 1, "{overlay}: {role} needs exactly one PDB");
            assert_eq!(budgets[0]["spec"]["maxUnavailable"], 1, "{overlay}: {role}");
        }
    }
}

#[test]
fn seat_processor_replicas_times_tasks_is_the_partition_count() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let partitions: u64 = config(&objects)["SEATFLOW_KAFKA_PARTITIONS"]
            .parse()
            .expect("a number");
        let processor = named(&objects, "StatefulSet", "seatflow-seat-processor");
        let replicas = processor["spec"]["replicas"].as_u64().expect("replicas");
        let tasks: u64 = processor["metadata"]["annotations"]["seatflow.io/tasks-per-pod"]
            .as_str()
            .expect("tasks-per-pod annotation")
            .parse()
            .expect("a number");
        assert_eq!(replicas * tasks, partitions, "{overlay}");

        let claim = &processor["spec"]["volumeClaimTemplates"][0]["spec"];
        assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
        let container = &processor["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["resources"]["limits"]["cpu"], "4");
        assert_eq!(container["resources"]["limits"]["memory"], "4Gi");
        assert_eq!(container["resources"]["requests"]["memory"], "2Gi");
        assert_eq!(container["args"][2], "/data");
        assert_eq!(
            container["volumeMounts"][0]["mountPath"], "/data",
            "{overlay}: the store is on the volume"
        );
    }
    // Production keeps the seed's sizing and the fast storage class.
    let prod = render("prod");
    let processor = named(&prod, "StatefulSet", "seatflow-seat-processor");
    assert_eq!(
        processor["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "fast-ssd"
    );
    assert_eq!(
        processor["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "2"
    );
}

#[test]
fn only_the_gateway_autoscales_as_the_seed_says() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let autoscalers: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "HorizontalPodAutoscaler")
            .collect();
        assert_eq!(autoscalers.len(), 1, "{overlay}");
        let hpa = &autoscalers[0]["spec"];
        assert_eq!(hpa["scaleTargetRef"]["name"], "seatflow-gateway");
        assert_eq!(
            (hpa["minReplicas"].clone(), hpa["maxReplicas"].clone()),
            (3.into(), 20.into())
        );
        assert_eq!(
            hpa["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        let up = &hpa["behavior"]["scaleUp"];
        assert_eq!(up["stabilizationWindowSeconds"], 30);
        assert_eq!(up["policies"][0]["type"], "Percent");
        assert_eq!(up["policies"][0]["value"], 100);
        assert_eq!(up["policies"][0]["periodSeconds"], 30);
        let down = &hpa["behavior"]["scaleDown"];
        assert_eq!(down["stabilizationWindowSeconds"], 300);
        assert_eq!(down["policies"][0]["type"], "Pods");
        assert_eq!(down["policies"][0]["value"], 1);
        assert_eq!(down["policies"][0]["periodSeconds"], 60);
        // The autoscaler owns the gateway's replica count: one owner, not two.
        let gateway = named(&objects, "Deployment", "seatflow-gateway");
        assert!(gateway["spec"]["replicas"].is_null(), "{overlay}");
    }
}

#[test]
fn kafka_is_three_kraft_brokers_with_the_production_guarantees() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let kafka = named(&objects, "StatefulSet", "kafka");
        assert_eq!(kafka["spec"]["replicas"], 3);
        assert_eq!(
            kafka["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "20Gi"
        );
        let container = &kafka["spec"]["template"]["spec"]["containers"][0];
        let env: HashMap<&str, &Value> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| (e["name"].as_str().expect("name"), e))
            .collect();
        for (name, value) in [
            ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", "false"),
            ("KAFKA_PROCESS_ROLES", "broker,controller"),
        ] {
            assert_eq!(env[name]["value"], value, "{overlay}: {name}");
        }
        assert_eq!(
            env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
            "spec.nodeName"
        );
        let script = container["command"][2].as_str().expect("start script");
        assert!(
            script.contains("KAFKA_BROKER_RACK=\"$NODE_NAME\""),
            "{script}"
        );

        let settings = config(&objects);
        assert_eq!(settings["SEATFLOW_KAFKA_REPLICATION"], "3");
        assert_eq!(settings["SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS"], "2");
        let topics = named(&objects, "Job", "seatflow-topics");
        assert_eq!(
            topics["spec"]["template"]["spec"]["containers"][0]["args"],
            serde_json::json!(["topics", "create"])
        );
        let archive = named(&objects, "CronJob", "seatflow-archive");
        let schedule = archive["spec"]["schedule"].as_str().expect("schedule");
        assert!(
            schedule.ends_with("* * *"),
            "{overlay}: daily, got {schedule}"
        );
        assert_eq!(settings["OTEL_TRACES_SAMPLER"], "traceidratio");
        assert_eq!(settings["OTEL_TRACES_SAMPLER_ARG"], "0.1");
    }
}

#[test]
fn every_setting_and_command_the_manifests_use_exists() {
    let settings: Vec<String> = seatflow::config::SETTINGS
        .iter()
        .map(|s| format!("SEATFLOW_{}", s.to_uppercase()))
        .collect();
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let mut names: Vec<String> = config(&objects).into_keys().collect();
        for (_, container) in seatflow_containers(&objects) {
            for var in container["env"].as_array().into_iter().flatten() {
                names.push(var["name"].as_str().expect("name").to_owned());
            }
        }
        for name in names.iter().filter(|n| n.starts_with("SEATFLOW_")) {
            assert!(
                settings.contains(name),
                "{overlay}: {name} is not a setting"
            );
        }
        for (workload, container) in seatflow_containers(&objects) {
            let args: Vec<&str> = container["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("a string"))
                .collect();
            let help = Command::new(env!("CARGO_BIN_EXE_seatflow"))
                .args(&args)
                .arg("--help")
                .output()
                .expect("seatflow runs");
            assert!(
                help.status.success(),
                "{overlay}: {workload} runs `seatflow {}`, which seatflow does not accept: {}",
                args.join(" "),
                String::from_utf8_lossy(&help.stderr)
            );
        }
        // Credentials only ever come from the Secret, and prod's is not in the repository.
        let secrets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
        if overlay == "prod" {
            assert!(secrets.is_empty(), "prod must not carry a Secret");
        }
        for (workload, container) in seatflow_containers(&objects) {
            for var in container["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().expect("name");
                if name == "SEATFLOW_DATABASE_URL" || name == "SEATFLOW_REDIS_URL" {
                    let secret = var["valueFrom"]["secretKeyRef"]["name"]
                        .as_str()
                        .unwrap_or_else(|| {
                            panic!("{overlay}: {workload} {name} not from a Secret")
                        });
                    // Kustomize names a generated Secret with a hash of its content.
                    assert!(
                        secret.starts_with("seatflow-secrets"),
                        "{overlay}: {secret}"
                    );
                    if overlay == "dev" {
                        assert!(
                            secrets.iter().any(|s| s["metadata"]["name"] == secret),
                            "dev: {workload} refers to a Secret {secret} that is not there"
                        );
                    }
                }
            }
        }
    }
}

/// Every role's metrics reach Prometheus exactly once: each pod is scraped on a port it
/// declares, and the OTLP push of the same numbers is off (both would count every series
/// twice). The tracing settings are ones seatflow supports, at the seed's 10 %.
#[test]
fn every_roles_metrics_are_scraped_once_and_traces_are_sampled_at_a_tenth() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let config = config(&objects);
        assert_eq!(
            config.get("OTEL_METRICS_EXPORTER").map(String::as_str),
            Some("none"),
            "{overlay}: the pods are scraped, so the OTLP metrics push must be off"
        );
        let ratio = seatflow::observability::root_ratio(
            config.get("OTEL_TRACES_SAMPLER").map(String::as_str),
            config.get("OTEL_TRACES_SAMPLER_ARG").map(String::as_str),
        );
        assert_eq!(ratio, Ok(0.1), "{overlay}: the trace sampler");
        for role in ROLES {
            let workload = workloads(&objects)
                .find(|w| w["metadata"]["name"] == role)
                .unwrap_or_else(|| panic!("{overlay}: no {role}"));
            let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                annotations["prometheus.io/scrape"], "true",
                "{overlay}: {role}"
            );
            assert_eq!(
                annotations["prometheus.io/path"], "/metrics",
                "{overlay}: {role}"
            );
            let port: u64 = annotations["prometheus.io/port"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{overlay}: {role} names no scrape port"));
            let declared = pod_spec(workload)["containers"]
                .as_array()
                .expect("containers")
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .any(|p| p["containerPort"] == port);
            assert!(
                declared,
                "{overlay}: {role} is scraped on {port}, a port it does not declare"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_probes_point_at_endpoints_that_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let app = embedded::start(seatflow::Config::embedded(dir.path(), 1)).await;
    let base = app.base.clone();
    let client = reqwest::Client::new();
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let gateway = named(&objects, "Deployment", "seatflow-gateway");
        let container = &gateway["spec"]["template"]["spec"]["containers"][0];
        let port = container["ports"][0]["containerPort"]
            .as_u64()
            .expect("port");
        assert!(
            container["args"]
                .as_array()
                .expect("args")
                .iter()
                .any(|a| a.as_str() == Some(&format!("0.0.0.0:{port}"))),
            "{overlay}: the gateway listens on the probed port"
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            let path = container[probe]["httpGet"]["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{overlay}: no {probe}"));
            // Ready may take a moment (the log replay); a missing route never answers 200.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let status = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .expect("request")
                    .status();
                if status == 200 {
                    break;
                }
                assert_ne!(status, 404, "{overlay}: {probe} {path} does not exist");
                assert!(std::time::Instant::now() < deadline, "{path}: {status}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    app.stop().await;

    // The roles without an HTTP API are probed on their metrics endpoint, which serves
    // /health/live on `metrics_bind` (each role's own port by default).
    let default_port = |role: seatflow::MetricsRole| {
        u64::from(
            seatflow::Config::default()
                .metrics_addr(role)
                .expect("addr")
                .port(),
        )
    };
    for overlay in OVERLAYS {
        let objects = render(overlay);
        for (role, metrics_role) in [
            (
                "seatflow-seat-processor",
                seatflow::MetricsRole::SeatProcessor,
            ),
            ("seatflow-projector", seatflow::MetricsRole::Projector),
        ] {
            let default_port = default_port(metrics_role);
            let workload = workloads(&objects)
                .find(|w| w["metadata"]["name"] == role)
                .expect("workload");
            let container = &workload["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                container["ports"][0]["containerPort"], default_port,
                "{overlay}: {role}"
            );
            assert_eq!(
                container["livenessProbe"]["httpGet"]["path"],
                "/health/live"
            );
            assert_eq!(
                workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
                default_port.to_string()
            );
        }
    }
}

#[test]
fn the_alert_rules_are_valid_and_each_alert_fires_in_its_unit_test() {
    let rules = repo().join("ops/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&rules)
            .output()
            .expect("promtool runs (ops/setup installs Debian's prometheus package)");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every alert the seed asks for is there, and every alert has a unit test that fires it.
    let text = std::fs::read_to_string(rules.join("alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(rules.join("alerts_test.yml")).expect("tests");
    let alerts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    for seed in [
        "HighConsumerLag",
        "HighTimeoutRate",
        "SeatProcessorSlowdown",
        "KafkaDiskFull",
    ] {
        assert!(alerts.contains(&seed), "{seed} missing");
    }
    for alert in alerts {
        assert!(
            tests
                .split("alertname: ")
                .skip(1)
                .any(|t| t.starts_with(alert) && t.contains("exp_labels")),
            "{alert} has no unit test that fires it"
        );
    }
}

/// The series the dashboard and the alert rules read: seatflow's own (issue 5 exports them all on
/// `/metrics`) and the brokers' JMX exporter's.
const SERIES: [&str; 16] = [
    "seatflow_reservation_requests_total",
    "seatflow_http_request_duration_seconds",
    "seatflow_seat_processor_decision_seconds",
    "seatflow_seat_processor_batch_size",
    "seatflow_transaction_commit_seconds",
    "seatflow_consumer_lag_records",
    "seatflow_rocksdb_write_seconds",
    "seatflow_projector_lag_seconds",
    "seatflow_redis_up",
    "seatflow_pending_requests",
    "seatflow_dedup_hits_total",
    "seatflow_read_cache_hits_total",
    "seatflow_read_cache_misses_total",
    "seatflow_redis_failures_total",
    "seatflow_redis_skipped_calls_total",
    "kafka_log_log_size",
];

/// The metric names a PromQL expression reads (histogram suffixes removed).
fn series_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.starts_with("seatflow_") || word.starts_with("kafka_") {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            found.push(base.to_owned());
        }
        rest = &rest[end..];
    }
    found
}

#[test]
fn the_dashboard_has_the_seeds_four_rows_and_reads_only_known_series() {
    let text =
        std::fs::read_to_string(repo().join("ops/grafana/seatflow.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().expect("title"))
        .collect();
    assert_eq!(rows, ["Throughput", "Latency", "Health", "Application"]);
    let mut ids = std::collections::HashSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "ids are unique"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} shows nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let series = series_in(expr);
            assert!(!series.is_empty(), "{expr} reads no series");
            for name in series {
                assert!(
                    SERIES.contains(&name.as_str()),
                    "{expr}: unknown series {name}"
                );
            }
        }
    }
    // The health row shows the lag the most important alert watches.
    assert!(text.contains("seatflow_consumer_lag_records"));

    let rules = std::fs::read_to_string(repo().join("ops/prometheus/alerts.yml")).expect("rules");
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for name in series_in(line) {
            assert!(
                SERIES.contains(&name.as_str()),
                "alerts.yml: unknown series {name}"
            );
        }
    }
}

/// The HTTP gateway and the command side link no storage engine: commands do not depend on the
/// seat processor (they did, and every gateway linked RocksDB). Read from Cargo's own resolution
/// of the lock file, not from the manifests.
#[test]
fn the_gateway_and_the_command_side_link_no_rocksdb() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in [
        "seatflow-gateway",
        "seatflow-commands",
        "seatflow-aggregates",
    ] {
        let output = Command::new(&cargo)
            .args([
                "tree",
                "--offline",
                "--locked",
                "-e",
                "normal",
                "-p",
                package,
            ])
            .current_dir(repo())
            .output()
            .expect("cargo tree runs");
        assert!(
            output.status.success(),
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let tree = String::from_utf8_lossy(&output.stdout);
        assert!(tree.contains(package), "{tree}");
        assert!(
            !tree.contains("rocksdb"),
            "{package} links RocksDB:\n{tree}"
        );
    }
}
