//! The Helm chart in deploy/kubernetes/vigil/, rendered by the real `helm` (named by
//! VIGIL_HELM; scripts/test installs it) for both layouts: every pod meets Pod Security
//! `restricted` and runs on a read-only root, every container has requests, limits and
//! probes, every workload is selected by a NetworkPolicy under a default deny, no Secret is
//! rendered from values, and the vigil.toml the chart writes loads as Vigil's configuration.
//! Also `vigil healthcheck`, which the distroless image's HEALTHCHECK runs.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_pipeline::config::{Config, Overrides};
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::Vigil;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ROLES_VALUES: &str = "deploy/kubernetes/vigil/values-kafka-roles.yaml";
const WORKLOAD_KINDS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"];

fn chart() -> PathBuf {
    Path::new(ROOT).join("deploy/kubernetes/vigil")
}

fn helm() -> PathBuf {
    match std::env::var_os("VIGIL_HELM") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "VIGIL_HELM is not set: it names the helm binary these tests render the chart with \
             (./scripts/test sets it; by hand: VIGIL_HELM=/path/to/helm cargo test -p vigil \
             --test it deploy_chart)"
        ),
    }
}

/// `helm template` of the chart into the namespace `vigil` with `args`; Err(stderr) when
/// helm refuses.
fn try_render(args: &[&str]) -> Result<Vec<Yaml>, String> {
    let output = Command::new(helm())
        .arg("template")
        .arg("vigil")
        .arg(chart())
        .args(["--namespace", "vigil"])
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("run helm");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).expect("helm writes UTF-8");
    let documents = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("helm's output is not YAML: {error}\n{text}"));
    Ok(documents.into_iter().filter(|doc| !doc.is_null()).collect())
}

fn render(args: &[&str]) -> Vec<Yaml> {
    try_render(args).unwrap_or_else(|stderr| panic!("helm template {args:?} failed: {stderr}"))
}

fn single() -> Vec<Yaml> {
    render(&[])
}

fn roles() -> Vec<Yaml> {
    render(&["-f", ROLES_VALUES])
}

fn kind(doc: &Yaml) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

fn of_kind<'a>(docs: &'a [Yaml], wanted: &str) -> Vec<&'a Yaml> {
    docs.iter().filter(|doc| kind(doc) == wanted).collect()
}

fn by_name<'a>(docs: &'a [Yaml], wanted_kind: &str, wanted_name: &str) -> &'a Yaml {
    docs.iter()
        .find(|doc| kind(doc) == wanted_kind && name(doc) == wanted_name)
        .unwrap_or_else(|| panic!("no {wanted_kind} {wanted_name} in the chart"))
}

fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(yaml: &Yaml) -> Vec<&str> {
    list(yaml).iter().filter_map(Yaml::as_str).collect()
}

/// The pod template of a workload, whatever its kind.
fn pod_template(doc: &Yaml) -> &Yaml {
    if kind(doc) == "CronJob" {
        &doc["spec"]["jobTemplate"]["spec"]["template"]
    } else {
        &doc["spec"]["template"]
    }
}

fn workloads(docs: &[Yaml]) -> Vec<&Yaml> {
    docs.iter()
        .filter(|doc| WORKLOAD_KINDS.contains(&kind(doc)))
        .collect()
}

/// Every container of a pod spec: (which list, the container).
fn containers(pod: &Yaml) -> Vec<(&'static str, &Yaml)> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|field| list(&pod[field]).iter().map(move |c| (field, c)))
        .collect()
}

/// What keeps `pod` (a pod spec) from Pod Security `restricted` with a read-only root, each
/// as "<where>: <why>"; empty when nothing does.
fn restricted_violations(pod: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let pod_context = &pod["securityContext"];
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[field].as_bool() == Some(true) {
            problems.push(format!("pod: {field} is true"));
        }
    }
    // The volume types `restricted` admits.
    const VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for volume in list(&pod["volumes"]) {
        for (key, _) in volume.as_hash().into_iter().flatten() {
            let key = key.as_str().unwrap_or("");
            if key != "name" && !VOLUMES.contains(&key) {
                problems.push(format!("volume {:?}: {key} is not allowed", volume["name"]));
            }
        }
    }
    if !list(&pod_context["sysctls"]).is_empty() {
        problems.push("pod: sets sysctls".into());
    }
    let pod_non_root = pod_context["runAsNonRoot"].as_bool();
    let pod_seccomp = pod_context["seccompProfile"]["type"].as_str();
    if pod_context["runAsUser"].as_i64() == Some(0) {
        problems.push("pod: runAsUser is 0".into());
    }
    for (field, container) in containers(pod) {
        let at = format!("{field} {}", container["name"].as_str().unwrap_or("?"));
        let context = &container["securityContext"];
        if context.is_badvalue() {
            problems.push(format!("{at}: no securityContext"));
            continue;
        }
        if context["privileged"].as_bool() == Some(true) {
            problems.push(format!("{at}: privileged"));
        }
        if context["allowPrivilegeEscalation"].as_bool() != Some(false) {
            problems.push(format!("{at}: allowPrivilegeEscalation is not false"));
        }
        let drop = strings(&context["capabilities"]["drop"]);
        if !drop.contains(&"ALL") {
            problems.push(format!("{at}: capabilities do not drop ALL"));
        }
        for added in strings(&context["capabilities"]["add"]) {
            if added != "NET_BIND_SERVICE" {
                problems.push(format!("{at}: adds capability {added}"));
            }
        }
        let non_root = context["runAsNonRoot"].as_bool().or(pod_non_root);
        if non_root != Some(true) {
            problems.push(format!("{at}: runAsNonRoot is not true"));
        }
        if context["runAsUser"].as_i64() == Some(0) {
            problems.push(format!("{at}: runAsUser is 0"));
        }
        let seccomp = context["seccompProfile"]["type"].as_str().or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            problems.push(format!("{at}: seccompProfile is {seccomp:?}"));
        }
        if context["readOnlyRootFilesystem"].as_bool() != Some(true) {
            problems.push(format!("{at}: root filesystem is writable"));
        }
        if context["procMount"]
            .as_str()
            .is_some_and(|m| m != "Default")
        {
            problems.push(format!("{at}: procMount is not Default"));
        }
        for port in list(&container["ports"]) {
            if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                problems.push(format!("{at}: uses a hostPort"));
            }
        }
    }
    problems
}

/// What a container lacks of requests, limits and probes.
fn container_gaps(pod: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (field, container) in containers(pod) {
        let at = format!("{field} {}", container["name"].as_str().unwrap_or("?"));
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                if container["resources"][bound][resource].is_badvalue() {
                    problems.push(format!("{at}: no {bound}.{resource}"));
                }
            }
        }
        if field == "containers" {
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if container[probe].is_badvalue() {
                    problems.push(format!("{at}: no {probe}"));
                } else if container[probe]["httpGet"]["path"].as_str() != Some("/healthz") {
                    problems.push(format!("{at}: {probe} does not ask /healthz"));
                }
            }
        }
    }
    problems
}

/// Whether `selector` (a label selector with matchLabels) selects pods labelled `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let Some(wanted) = selector["matchLabels"].as_hash() else {
        // `{}` (or only expressions, which this chart does not use) selects every pod.
        return selector.as_hash().is_some_and(|h| h.is_empty());
    };
    wanted
        .iter()
        .all(|(key, value)| labels[key.as_str().unwrap_or("")] == *value)
}

/// The checks every layout must pass; gives the problems found, each naming its object.
fn layout_problems(docs: &[Yaml]) -> Vec<String> {
    let mut problems = Vec::new();
    let policies = of_kind(docs, "NetworkPolicy");
    let default_deny = policies.iter().any(|policy| {
        let spec = &policy["spec"];
        let types = strings(&spec["policyTypes"]);
        spec["podSelector"].as_hash().is_some_and(|h| h.is_empty())
            && types.contains(&"Ingress")
            && types.contains(&"Egress")
            && list(&spec["ingress"]).is_empty()
            && list(&spec["egress"]).is_empty()
    });
    if !default_deny {
        problems.push("no default-deny NetworkPolicy (every pod, ingress and egress)".into());
    }
    let budgets = of_kind(docs, "PodDisruptionBudget");
    for workload in workloads(docs) {
        let at = format!("{} {}", kind(workload), name(workload));
        let template = pod_template(workload);
        let pod = &template["spec"];
        let labels = &template["metadata"]["labels"];
        problems.extend(
            restricted_violations(pod)
                .into_iter()
                .map(|p| format!("{at}: {p}")),
        );
        problems.extend(
            container_gaps(pod)
                .into_iter()
                .map(|p| format!("{at}: {p}")),
        );
        if pod["automountServiceAccountToken"].as_bool() != Some(false) {
            problems.push(format!("{at}: the service account token is mounted"));
        }
        let own_policy = policies.iter().any(|policy| {
            let types = strings(&policy["spec"]["policyTypes"]);
            selects(&policy["spec"]["podSelector"], labels)
                && !policy["spec"]["podSelector"]
                    .as_hash()
                    .is_some_and(|h| h.is_empty())
                && types.contains(&"Ingress")
                && types.contains(&"Egress")
        });
        if !own_policy {
            problems.push(format!(
                "{at}: no NetworkPolicy of its own selects its pods"
            ));
        }
        if !budgets
            .iter()
            .any(|budget| selects(&budget["spec"]["selector"], labels))
        {
            problems.push(format!("{at}: no PodDisruptionBudget"));
        }
        let account = pod["serviceAccountName"].as_str().unwrap_or("");
        if of_kind(docs, "ServiceAccount")
            .iter()
            .all(|sa| name(sa) != account)
        {
            problems.push(format!(
                "{at}: its ServiceAccount {account:?} is not in the chart"
            ));
        }
        // Secrets reach pods from the Secret External Secrets writes, never as literals.
        for (_, container) in containers(pod) {
            for variable in list(&container["env"]) {
                let variable_name = variable["name"].as_str().unwrap_or("");
                let upper = variable_name.to_ascii_uppercase();
                let secret_like = ["TOKEN", "PASSWORD", "SECRET", "KEY"]
                    .iter()
                    .any(|word| upper.contains(word));
                if secret_like && !variable["value"].is_badvalue() {
                    problems.push(format!("{at}: {variable_name} has a literal value"));
                }
            }
        }
    }
    for secret in of_kind(docs, "Secret") {
        if !secret["data"].is_badvalue() || !secret["stringData"].is_badvalue() {
            problems.push(format!("Secret {} carries data from values", name(secret)));
        }
    }
    problems
}

fn assert_no_problems(layout: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "the {layout} layout:\n  {}",
        problems.join("\n  ")
    );
}

/// The `vigil run` arguments of a workload's container.
fn run_args(workload: &Yaml) -> Vec<&str> {
    strings(&pod_template(workload)["spec"]["containers"][0]["args"])
}

/// The vigil.toml of the chart's ConfigMap.
fn config_file(docs: &[Yaml]) -> &str {
    of_kind(docs, "ConfigMap")
        .into_iter()
        .find_map(|cm| cm["data"]["vigil.toml"].as_str())
        .expect("a ConfigMap with vigil.toml")
}

/// The vigil.toml of the chart's ConfigMap, loaded and checked as `vigil run` does.
fn assert_config_loads(docs: &[Yaml]) -> Config {
    let text = config_file(docs);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vigil.toml");
    std::fs::write(&file, text).unwrap();
    let config = Config::load(Some(&file), &Overrides::default())
        .unwrap_or_else(|error| panic!("the chart's vigil.toml does not load: {error}\n{text}"));
    config
        .validate()
        .unwrap_or_else(|error| panic!("the chart's vigil.toml is refused: {error}\n{text}"));
    config
}

#[test]
fn helm_lint_passes_for_both_layouts() {
    for values in [&[][..], &["-f", ROLES_VALUES][..]] {
        let output = Command::new(helm())
            .arg("lint")
            .arg(chart())
            .args(["--strict", "--namespace", "vigil"])
            .args(values)
            .current_dir(ROOT)
            .output()
            .expect("run helm");
        assert!(
            output.status.success(),
            "helm lint {values:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn single_node_layout_is_one_restricted_statefulset_with_a_volume() {
    let docs = single();
    assert_no_problems("single-node", layout_problems(&docs));
    let workloads = workloads(&docs);
    assert_eq!(workloads.len(), 1, "one workload");
    let vigil = workloads[0];
    assert_eq!(kind(vigil), "StatefulSet");
    assert_eq!(
        run_args(vigil),
        ["run", "--config", "/etc/vigil/vigil.toml", "--role", "all"]
    );
    assert!(
        !list(&vigil["spec"]["volumeClaimTemplates"]).is_empty(),
        "the data directory is on a PersistentVolumeClaim"
    );
    assert!(of_kind(&docs, "HorizontalPodAutoscaler").is_empty());
    let config = assert_config_loads(&docs);
    assert_eq!(config.index.retention_days, Some(30));
}

/// The single-node pod's command, with the chart's vigil.toml and its data directory inside a
/// volume, starts Vigil, and `vigil healthcheck` (the image's HEALTHCHECK) finds it healthy.
#[test]
fn the_single_node_pod_starts_with_the_charts_config() {
    let docs = single();
    let vigil = by_name(&docs, "StatefulSet", "vigil-all");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, config_file(&docs)).unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let env = &pod_template(vigil)["spec"]["containers"][0]["env"];
    let data_dir = list(env)
        .iter()
        .find(|variable| variable["name"].as_str() == Some("VIGIL_DATA_DIR"))
        .and_then(|variable| variable["value"].as_str())
        .expect("VIGIL_DATA_DIR");
    let data_dir = volume.join(Path::new(data_dir).strip_prefix("/var/lib/vigil").unwrap());
    // `vigil run` as the pod runs it, but on a free port and in the temporary volume.
    let args = &run_args(vigil)[1..];
    let args: Vec<&str> = args
        .iter()
        .map(|arg| {
            if arg.ends_with("vigil.toml") {
                config.to_str().unwrap()
            } else {
                arg
            }
        })
        .collect();
    let mut running = Vigil::start_with(&data_dir, &args, &[]);
    let healthy = healthcheck(&running.url("/healthz"));
    assert!(healthy.status.success(), "{healthy:?}");
    running.terminate(std::time::Duration::from_secs(30));
    let down = healthcheck(&running.url("/healthz"));
    assert_eq!(down.status.code(), Some(1), "{down:?}");
}

#[test]
fn kafka_role_layout_runs_each_stage_where_its_state_lives() {
    let docs = roles();
    assert_no_problems("role", layout_problems(&docs));
    let expected = [
        ("vigil-ingest", "Deployment", "ingest"),
        ("vigil-detect", "Deployment", "detect"),
        ("vigil-index", "StatefulSet", "index,ui"),
    ];
    let found: BTreeSet<&str> = workloads(&docs).into_iter().map(name).collect();
    let wanted: BTreeSet<&str> = expected.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(found, wanted, "the role layout's workloads");
    for (workload_name, workload_kind, roles) in expected {
        let workload = by_name(&docs, workload_kind, workload_name);
        assert_eq!(
            run_args(workload)[3..],
            ["--role", roles],
            "{workload_name}"
        );
        let claims = list(&workload["spec"]["volumeClaimTemplates"]);
        assert_eq!(
            !claims.is_empty(),
            workload_kind == "StatefulSet",
            "{workload_name}: only the index keeps a volume"
        );
        let account = by_name(&docs, "ServiceAccount", workload_name);
        assert_eq!(
            account["automountServiceAccountToken"].as_bool(),
            Some(false)
        );
    }

    // detect scales on its consumer lag, and leaves its replica count to the autoscaler.
    let hpa = by_name(&docs, "HorizontalPodAutoscaler", "vigil-detect");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("Deployment")
    );
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("vigil-detect")
    );
    let metric = &hpa["spec"]["metrics"][0]["pods"]["metric"];
    assert_eq!(metric["name"].as_str(), Some("vigil_bus_lag"));
    assert_eq!(
        metric["selector"]["matchLabels"]["group"].as_str(),
        Some("detect")
    );
    assert!(by_name(&docs, "Deployment", "vigil-detect")["spec"]["replicas"].is_badvalue());

    // Every role reaches the MSK brokers on the IAM port, and only ingest and the UI are
    // reachable from the ingress controller.
    for (workload_name, _, _) in expected {
        let policy = by_name(&docs, "NetworkPolicy", workload_name);
        let kafka = list(&policy["spec"]["egress"]).iter().any(|rule| {
            list(&rule["ports"])
                .iter()
                .any(|p| p["port"].as_i64() == Some(9098))
        });
        assert!(kafka, "{workload_name}: no egress to Kafka on 9098");
        let from_ingress = list(&policy["spec"]["ingress"]).iter().any(|rule| {
            list(&rule["from"]).iter().any(|peer| {
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str()
                    == Some("ingress-nginx")
            })
        });
        assert_eq!(
            from_ingress,
            workload_name != "vigil-detect",
            "{workload_name}"
        );
    }

    let ingress = of_kind(&docs, "Ingress");
    assert_eq!(ingress.len(), 1);
    assert!(
        !list(&ingress[0]["spec"]["tls"]).is_empty(),
        "the Ingress serves TLS"
    );
    let backends: BTreeSet<&str> = list(&ingress[0]["spec"]["rules"][0]["http"]["paths"])
        .iter()
        .filter_map(|path| path["backend"]["service"]["name"].as_str())
        .collect();
    assert_eq!(backends, BTreeSet::from(["vigil-index", "vigil-ingest"]));

    // Secrets come from Secrets Manager through External Secrets, never from values.
    let external = of_kind(&docs, "ExternalSecret");
    assert_eq!(external.len(), 1);
    assert_eq!(
        external[0]["spec"]["secretStoreRef"]["name"].as_str(),
        Some("vigil-secrets-manager")
    );
    let store = by_name(&docs, "SecretStore", "vigil-secrets-manager");
    assert_eq!(
        store["spec"]["provider"]["aws"]["service"].as_str(),
        Some("SecretsManager")
    );

    // Each pod gets the secrets its role uses, as (variable, the Secret's key): the console's
    // admin token only where the console runs, a token of their own to ingest pods (what
    // senders hold), the Firehose key only to ingest, and nothing to detect.
    for (workload_name, workload_kind, _) in expected {
        let container =
            &pod_template(by_name(&docs, workload_kind, workload_name))["spec"]["containers"][0];
        let from_secret: Vec<(&str, &str)> = list(&container["env"])
            .iter()
            .filter(|variable| {
                variable["valueFrom"]["secretKeyRef"]["name"].as_str() == Some("vigil-secrets")
            })
            .filter_map(|variable| {
                Some((
                    variable["name"].as_str()?,
                    variable["valueFrom"]["secretKeyRef"]["key"].as_str()?,
                ))
            })
            .collect();
        let wanted: &[(&str, &str)] = match workload_name {
            "vigil-ingest" => &[
                ("VIGIL_API_TOKEN", "VIGIL_INGEST_API_TOKEN"),
                ("VIGIL_FIREHOSE__ACCESS_KEY", "VIGIL_FIREHOSE__ACCESS_KEY"),
            ],
            "vigil-detect" => &[],
            _ => &[("VIGIL_API_TOKEN", "VIGIL_API_TOKEN")],
        };
        assert_eq!(from_secret, wanted, "{workload_name}");
        assert!(container["envFrom"].is_badvalue(), "{workload_name}");
    }

    let config = assert_config_loads(&docs);
    assert_eq!(
        config.bus.kafka.partitions, 6,
        "the chart's integers stay integers"
    );
}

#[test]
fn irsa_role_arns_and_the_optional_objects_render() {
    let arn = "arn:aws:iam::123456789012:role/vigil-ingest";
    let docs = render(&[
        "-f",
        ROLES_VALUES,
        "--set",
        &format!("components.ingest.serviceAccount.roleArn={arn}"),
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ]);
    assert_no_problems("role (all options)", layout_problems(&docs));
    let account = by_name(&docs, "ServiceAccount", "vigil-ingest");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str(),
        Some(arn)
    );
    assert_eq!(of_kind(&docs, "ServiceMonitor").len(), 1);
    let image = pod_template(by_name(&docs, "Deployment", "vigil-detect"))["spec"]["containers"][0]
        ["image"]
        .as_str()
        .unwrap();
    assert!(image.contains("@sha256:"), "{image}");

    // A Secret made outside the chart reaches every pod whole.
    let docs = render(&[
        "--set",
        "externalSecrets.enabled=false",
        "--set",
        "existingSecret=vigil-from-csi",
    ]);
    assert_no_problems("single-node (existing Secret)", layout_problems(&docs));
    assert!(of_kind(&docs, "ExternalSecret").is_empty());
    let container =
        &pod_template(by_name(&docs, "StatefulSet", "vigil-all"))["spec"]["containers"][0];
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"].as_str(),
        Some("vigil-from-csi")
    );

    // With KEDA, its ScaledObject replaces the chart's HPA.
    let docs = render(&[
        "-f",
        ROLES_VALUES,
        "--set",
        "autoscaling.detect.keda.enabled=true",
    ]);
    assert!(of_kind(&docs, "HorizontalPodAutoscaler").is_empty());
    assert_eq!(of_kind(&docs, "ScaledObject").len(), 1);
}

#[test]
fn the_chart_refuses_settings_that_cannot_work() {
    let cases = [
        (
            vec!["--set", "autoscaling.detect.maxReplicas=12"],
            "maxReplicas is above config.bus.kafka.partitions",
        ),
        (
            vec!["--set", "networkPolicy.kafka.cidrs=null"],
            "networkPolicy.kafka.cidrs must name",
        ),
        (
            vec!["--set", "ingress.tls.secretName="],
            "ingress.tls.secretName is required",
        ),
    ];
    for (set, expected) in cases {
        let mut args = vec!["-f", ROLES_VALUES];
        args.extend(set.iter().copied());
        match try_render(&args) {
            Ok(_) => panic!("{set:?} rendered"),
            Err(stderr) => assert!(stderr.contains(expected), "{set:?}: {stderr}"),
        }
    }
}

/// The checks themselves find what they look for: a chart broken in each way fails them.
#[test]
fn the_checks_catch_a_broken_pod() {
    let docs = render(&[
        "--set",
        "containerSecurityContext.capabilities.drop=null",
        "--set",
        "containerSecurityContext.readOnlyRootFilesystem=false",
        "--set",
        "podSecurityContext.seccompProfile=null",
        "--set",
        "containerSecurityContext.seccompProfile=null",
        "--set",
        "networkPolicy.defaultDeny=false",
    ]);
    let problems = layout_problems(&docs).join("\n");
    for expected in [
        "capabilities do not drop ALL",
        "root filesystem is writable",
        "seccompProfile is None",
        "no default-deny NetworkPolicy",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}

/// A server that answers each connection with `status` once, on a free port; its URL.
fn one_shot_server(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    format!("http://{address}/healthz")
}

fn healthcheck(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["healthcheck", "--url", url, "--timeout-ms", "3000"])
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("run vigil healthcheck")
}

#[test]
fn vigil_healthcheck_exits_zero_only_on_200() {
    let up = healthcheck(&one_shot_server("200 OK"));
    assert!(up.status.success(), "{up:?}");

    let failing = healthcheck(&one_shot_server("503 Service Unavailable"));
    assert_eq!(failing.status.code(), Some(1), "{failing:?}");
    assert!(String::from_utf8_lossy(&failing.stderr).contains("503"));

    // Nothing listening: a port bound and released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = healthcheck(&format!("http://{closed}/healthz"));
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach"));
}
