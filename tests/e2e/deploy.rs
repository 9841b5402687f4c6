//! The deployment files, checked against the binary: no container engine runs here, so
//! what can be checked without one is checked in every test run.
//!
//! - `deploy/compose.yaml` and every `deploy/k8s/*.yaml` parse as YAML;
//! - every environment variable they give a Shopfloor container (directly, through
//!   `envFrom` ConfigMaps and Secrets, or through the image's `ENV`) is one the binary
//!   reads ([`VARIABLES`]), and the values are valid settings;
//! - their commands are `serve` with known roles, the probes hit a role that serves
//!   HTTP, and the ingest runs once per namespace;
//! - the ingest mapping they mount is a valid mapping file;
//! - `scripts/build-release.sh` builds with exactly the Dockerfile's cargo
//!   command, and the image does not run as root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;
use shopfloor::cli::Role;
use shopfloor::settings::{Settings, VARIABLES};

/// Stands for what the manifests leave to the operator (`${VAR}` in compose, a Secret
/// reference): a valid token, password or host name.
const PLACEHOLDER: &str = "operator-value-7Kq2xW9mZr4T";

/// The Secret the operator creates before applying the manifests (they ship none, so
/// no known admin token can go live): its name and keys, with stand-in values.
const OPERATOR_SECRET: &str = "shopfloor-secrets";
fn operator_secret() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "DATABASE_URL".to_string(),
            format!("postgres://shopfloor:{PLACEHOLDER}@postgres:5432/shopfloor"),
        ),
        ("SHOPFLOOR_ADMIN_TOKEN".to_string(), PLACEHOLDER.to_string()),
    ])
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of a file (Kubernetes files hold several, separated by `---`).
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} is not well-formed YAML: {e}", path.display()));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn k8s_files() -> Vec<PathBuf> {
    let dir = root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Replaces compose interpolations (`${VAR}`, `${VAR:-default}`, `${VAR:?message}`)
/// with the placeholder.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed ${{ in {value:?}"));
        out.push_str(PLACEHOLDER);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// A Shopfloor container as a manifest runs it.
#[derive(Debug)]
struct Container {
    /// Where it is defined, for messages.
    origin: String,
    /// Its environment: name → value (placeholders where the value is a secret).
    env: BTreeMap<String, String>,
    /// Its arguments after the entrypoint.
    args: Vec<String>,
    /// Mounted files the container can read: path in the container → content.
    files: BTreeMap<String, String>,
    /// Paths of its HTTP probes.
    probes: Vec<String>,
}

impl Container {
    fn roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == "--role" {
                roles.push(args.next().cloned().unwrap_or_default());
            } else if let Some(r) = a.strip_prefix("--role=") {
                roles.push(r.to_string());
            }
        }
        if roles.is_empty() {
            Role::ALL.iter().map(|r| r.name().to_string()).collect()
        } else {
            roles
        }
    }
}

/// The image's own environment (`ENV` lines of the Dockerfile's final stage).
fn image_env() -> BTreeMap<String, String> {
    let dockerfile = read(&root().join("Dockerfile"));
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, last)| last)
        .expect("the Dockerfile has stages");
    let mut env = BTreeMap::new();
    for line in final_stage.lines() {
        if let Some(rest) = line.trim().strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("Dockerfile: use ENV KEY=value, not {line:?}"));
                env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    env
}

fn compose_containers() -> Vec<Container> {
    let path = root().join("deploy/compose.yaml");
    let docs = documents(&path);
    assert_eq!(docs.len(), 1, "deploy/compose.yaml is one document");
    let services = docs[0]["services"]
        .as_mapping()
        .expect("deploy/compose.yaml has services");
    let mut out = Vec::new();
    for (name, service) in services {
        let name = text(name).unwrap_or_default();
        let image = service["image"].as_str().unwrap_or_default();
        let is_shopfloor = image.starts_with("shopfloor") || !service["build"].is_null();
        if !is_shopfloor {
            continue;
        }
        let mut env = image_env();
        match &service["environment"] {
            Value::Mapping(m) => {
                for (k, v) in m {
                    env.insert(
                        text(k).expect("variable name"),
                        interpolate(&text(v).unwrap_or_default()),
                    );
                }
            }
            Value::Sequence(list) => {
                for item in list {
                    let item = text(item).expect("KEY=value");
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_string(), interpolate(v));
                }
            }
            Value::Null => {}
            other => panic!("compose service {name}: environment is {other:?}"),
        }
        assert!(
            service["env_file"].is_null(),
            "compose service {name}: use `environment`, so that the variables can be checked"
        );
        let args = match &service["command"] {
            Value::Sequence(list) => list.iter().filter_map(text).collect(),
            Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            _ => vec!["serve".to_string()],
        };
        out.push(Container {
            origin: format!("deploy/compose.yaml service {name}"),
            env,
            args,
            files: BTreeMap::new(),
            probes: Vec::new(),
        });
    }
    out
}

/// Name → (key → value) of every ConfigMap or Secret of this kind in the manifests.
fn key_values(docs: &[(String, Value)], kind: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (_, doc) in docs.iter().filter(|(_, d)| d["kind"] == kind) {
        let name = doc["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let mut entries = BTreeMap::new();
        for field in ["data", "stringData"] {
            if let Some(m) = doc[field].as_mapping() {
                for (k, v) in m {
                    // Secret `data` is base64; its values stand for themselves as placeholders.
                    let value = if kind == "Secret" && field == "data" {
                        PLACEHOLDER.to_string()
                    } else {
                        text(v).unwrap_or_default()
                    };
                    entries.insert(text(k).expect("key"), value);
                }
            }
        }
        out.insert(name, entries);
    }
    out
}

fn k8s_containers() -> Vec<Container> {
    let mut docs = Vec::new();
    for path in k8s_files() {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for doc in documents(&path) {
            docs.push((file.clone(), doc));
        }
    }
    let config_maps = key_values(&docs, "ConfigMap");
    let mut secrets = key_values(&docs, "Secret");
    assert!(
        !secrets.contains_key(OPERATOR_SECRET),
        "deploy/k8s must not ship {OPERATOR_SECRET}: the operator creates it"
    );
    secrets.insert(OPERATOR_SECRET.to_string(), operator_secret());
    let mut out = Vec::new();
    for (file, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "Job") {
            continue;
        }
        let workload = doc["metadata"]["name"].as_str().unwrap_or_default();
        let pod = &doc["spec"]["template"]["spec"];
        let volumes: BTreeMap<String, String> = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                Some((
                    v["name"].as_str()?.to_string(),
                    v["configMap"]["name"].as_str()?.to_string(),
                ))
            })
            .collect();
        for c in pod["containers"].as_sequence().expect("containers") {
            if !c["image"]
                .as_str()
                .unwrap_or_default()
                .contains("shopfloor")
            {
                continue;
            }
            let origin = format!(
                "deploy/k8s/{file} {kind} {workload} container {}",
                c["name"].as_str().unwrap_or("?")
            );
            let mut env = image_env();
            for from in c["envFrom"].as_sequence().into_iter().flatten() {
                let (source, name) = if let Some(n) = from["configMapRef"]["name"].as_str() {
                    (&config_maps, n)
                } else if let Some(n) = from["secretRef"]["name"].as_str() {
                    (&secrets, n)
                } else {
                    panic!("{origin}: envFrom must name a configMapRef or a secretRef");
                };
                let entries = source
                    .get(name)
                    .unwrap_or_else(|| panic!("{origin}: envFrom {name} is not in deploy/k8s"));
                env.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            for e in c["env"].as_sequence().into_iter().flatten() {
                let name = e["name"].as_str().expect("env name").to_string();
                let value = text(&e["value"]).unwrap_or_else(|| PLACEHOLDER.to_string());
                env.insert(name, value);
            }
            let mut files = BTreeMap::new();
            for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
                let mount = m["mountPath"].as_str().expect("mountPath");
                let volume = m["name"].as_str().expect("volume name");
                if let Some(cm) = volumes.get(volume) {
                    let entries = config_maps
                        .get(cm)
                        .unwrap_or_else(|| panic!("{origin}: ConfigMap {cm} is not in deploy/k8s"));
                    for (key, content) in entries {
                        files.insert(
                            format!("{}/{key}", mount.trim_end_matches('/')),
                            content.clone(),
                        );
                    }
                }
            }
            let probes = ["startupProbe", "livenessProbe", "readinessProbe"]
                .iter()
                .filter_map(|p| c[*p]["httpGet"]["path"].as_str().map(str::to_string))
                .collect();
            let args = c["args"]
                .as_sequence()
                .map(|a| a.iter().filter_map(text).collect())
                .unwrap_or_else(|| vec!["serve".to_string()]);
            out.push(Container {
                origin,
                env,
                args,
                files,
                probes,
            });
        }
    }
    out
}

fn all_containers() -> Vec<Container> {
    let mut all = compose_containers();
    assert!(
        !all.is_empty(),
        "deploy/compose.yaml runs no Shopfloor service"
    );
    let k8s = k8s_containers();
    assert!(!k8s.is_empty(), "deploy/k8s runs no Shopfloor container");
    all.extend(k8s);
    all
}

#[test]
fn the_deploy_manifests_are_well_formed_yaml() {
    documents(&root().join("deploy/compose.yaml"));
    for path in k8s_files() {
        for doc in documents(&path) {
            assert!(
                doc["kind"].is_string() && doc["apiVersion"].is_string(),
                "{}: every document needs apiVersion and kind",
                path.display()
            );
        }
    }
}

#[test]
fn every_variable_in_the_deploy_manifests_is_a_setting_of_the_binary() {
    let mut unknown = Vec::new();
    for c in all_containers() {
        for name in c.env.keys() {
            if !VARIABLES.contains(&name.as_str()) {
                unknown.push(format!("{}: {name}", c.origin));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "variables the binary does not read (shopfloor::settings::VARIABLES is {VARIABLES:?}):\n  {}",
        unknown.join("\n  ")
    );
}

#[test]
fn the_deploy_manifests_give_valid_settings_for_a_container() {
    let dir = tempfile::tempdir().expect("tempdir");
    for c in all_containers() {
        let mut env = c.env.clone();
        // A mounted mapping file must exist in the container and be a valid mapping.
        if let Some(path) = env.get("SHOPFLOOR_INGEST_MAPPING").cloned() {
            let content = c.files.get(&path).unwrap_or_else(|| {
                panic!(
                    "{}: SHOPFLOOR_INGEST_MAPPING {path} is not mounted",
                    c.origin
                )
            });
            let local = dir.path().join("mapping.json");
            std::fs::write(&local, content).expect("write");
            shopfloor_ingest::Mapping::load(&local)
                .unwrap_or_else(|e| panic!("{}: the mapping {path} is not valid: {e}", c.origin));
            env.insert(
                "SHOPFLOOR_INGEST_MAPPING".into(),
                local.display().to_string(),
            );
        }
        let settings = Settings::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", c.origin));
        // The defaults point at loopback: wrong in a container.
        for required in ["DATABASE_URL", "NATS_URL", "SHOPFLOOR_NAMESPACE"] {
            assert!(
                env.contains_key(required),
                "{}: {required} is not set (its default is for one machine)",
                c.origin
            );
        }
        assert!(
            !settings.http_addr.ip().is_loopback(),
            "{}: SHOPFLOOR_HTTP_ADDR {} listens on loopback only",
            c.origin,
            settings.http_addr
        );
        let roles = c.roles();
        if roles.iter().any(|r| r == "ingest") {
            let url = settings
                .mqtt_url
                .as_ref()
                .unwrap_or_else(|| panic!("{}: runs the ingest with MQTT_URL=off", c.origin));
            shopfloor_ingest::config::broker_of(url)
                .unwrap_or_else(|e| panic!("{}: MQTT_URL: {e}", c.origin));
        }
    }
}

#[test]
fn the_deploy_manifests_run_known_roles_with_working_probes() {
    let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
    let mut covered = std::collections::BTreeSet::new();
    for c in k8s_containers().iter().chain(&compose_containers()) {
        assert_eq!(
            c.args.first().map(String::as_str),
            Some("serve"),
            "{}",
            c.origin
        );
        for role in c.roles() {
            assert!(
                known.contains(&role.as_str()),
                "{}: unknown role {role}",
                c.origin
            );
            if c.origin.starts_with("deploy/k8s") {
                covered.insert(role);
            }
        }
        if !c.probes.is_empty() {
            assert!(
                c.roles().iter().any(|r| r == "api"),
                "{}: probes need the api role (it serves /healthz and /readyz)",
                c.origin
            );
            for path in &c.probes {
                assert!(
                    path == "/healthz" || path == "/readyz",
                    "{}: probe on {path}",
                    c.origin
                );
            }
        }
        if c.origin.starts_with("deploy/k8s") {
            assert!(
                c.probes.iter().any(|p| p == "/healthz") && c.probes.iter().any(|p| p == "/readyz"),
                "{}: probes on /healthz and /readyz expected",
                c.origin
            );
        }
    }
    assert_eq!(
        covered.into_iter().collect::<Vec<_>>(),
        {
            let mut k = known.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            k.sort();
            k
        },
        "deploy/k8s runs every role"
    );
}

#[test]
fn the_ingest_runs_once_per_namespace_in_kubernetes() {
    for path in k8s_files() {
        for doc in documents(&path) {
            if doc["kind"] != "Deployment" {
                continue;
            }
            let args: Vec<String> = doc["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|c| c["args"].as_sequence().cloned().unwrap_or_default())
                .filter_map(|a| text(&a))
                .collect();
            if args
                .windows(2)
                .any(|w| w[0] == "--role" && w[1] == "ingest")
            {
                let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                assert_eq!(
                    doc["spec"]["replicas"].as_u64(),
                    Some(1),
                    "{name}: one ingest per namespace"
                );
                assert_eq!(
                    doc["spec"]["strategy"]["type"].as_str(),
                    Some("Recreate"),
                    "{name}: a rolling update would run two ingest sessions with one client id"
                );
            }
        }
    }
}

/// The cargo command of a file: from `cargo build` to the end of the command (a line
/// continuation or `&&` ends it).
fn cargo_build_command(path: &Path) -> String {
    let text = read(path);
    let commands: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.find("cargo build").map(|i| &l[i..]))
        .map(|c| {
            c.split("&&")
                .next()
                .unwrap_or_default()
                .trim_end()
                .trim_end_matches('\\')
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(
        commands.len(),
        1,
        "{}: exactly one `cargo build` command expected, found {commands:?}",
        path.display()
    );
    commands.into_iter().next().unwrap_or_default()
}

#[test]
fn ci_builds_the_release_binary_as_the_dockerfile_does() {
    let docker = cargo_build_command(&root().join("Dockerfile"));
    let script = cargo_build_command(&root().join("scripts/build-release.sh"));
    assert_eq!(
        docker, script,
        "scripts/build-release.sh must run exactly the Dockerfile's cargo build command"
    );
    assert!(
        docker.contains("--release") && docker.contains("--locked"),
        "{docker}"
    );
}

#[test]
fn the_image_does_not_run_as_root() {
    let dockerfile = read(&root().join("Dockerfile"));
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("the Dockerfile sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "USER {user}: a numeric, non-root user (so Kubernetes can check runAsNonRoot)"
    );
}

/// Every workload of the Kubernetes manifests, with its file name.
fn k8s_workloads() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in k8s_files() {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for doc in documents(&path) {
            if matches!(doc["kind"].as_str(), Some("Deployment" | "StatefulSet")) {
                out.push((file.clone(), doc));
            }
        }
    }
    out
}

#[test]
fn the_k8s_manifests_are_highly_available() {
    let docs: Vec<Value> = k8s_files().iter().flat_map(|p| documents(p)).collect();
    // No admin token ships with the manifests (a known one would go live unedited).
    for doc in &docs {
        for field in ["data", "stringData"] {
            if let Some(map) = doc[field].as_mapping() {
                assert!(
                    !map.contains_key(Value::from("SHOPFLOOR_ADMIN_TOKEN")),
                    "{}: ships an admin token",
                    doc["metadata"]["name"].as_str().unwrap_or("?")
                );
            }
        }
    }
    // The stream at R3 over a 3-node NATS cluster.
    let config = key_values(
        &docs
            .iter()
            .map(|d| (String::new(), d.clone()))
            .collect::<Vec<_>>(),
        "ConfigMap",
    );
    let shared = &config["shopfloor-config"];
    assert_eq!(
        shared.get("SHOPFLOOR_STREAM_REPLICAS").map(String::as_str),
        Some("3")
    );
    let nats = shared.get("NATS_URL").expect("NATS_URL");
    assert!(
        nats.split(',').count() >= 3,
        "NATS_URL names one server: {nats}"
    );
    for (file, doc) in k8s_workloads() {
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let pod = &doc["spec"]["template"]["spec"];
        if doc["spec"]["replicas"].as_u64().unwrap_or(1) >= 2 {
            let spread = pod["topologySpreadConstraints"].as_sequence();
            assert!(
                spread.is_some_and(|s| s
                    .iter()
                    .any(|c| c["topologyKey"] == "kubernetes.io/hostname")),
                "{file} {name}: 2+ replicas without a topology spread over nodes"
            );
        }
        for c in pod["containers"].as_sequence().into_iter().flatten() {
            assert!(
                c["resources"]["requests"]["cpu"].as_str().is_some(),
                "{file} {name}: no CPU request"
            );
        }
    }
}
