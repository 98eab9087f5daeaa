//! The deployment files stay deployable: the Kubernetes manifests in
//! `cluster/deploy/k8s/` and the container build (`Containerfile`,
//! `.dockerignore`). Needs no cluster and no container engine.
//!
//! The manifests are read as Kubernetes would: every YAML document an
//! object, the workloads' references (Services, Secret, ConfigMap, volumes,
//! named ports) resolved. Each pod's node configuration is then built the
//! way the pod builds it: the ConfigMap's `launch.sh` is run with the pod's
//! environment (downward API and Secret variables made concrete) and with
//! `echo` standing in for the binary, and the layers it names are validated
//! by `switchyard_config::Config::from_layers`, the loader `switchyard serve`
//! uses. When `kubectl` is installed, `kubectl kustomize` must also render
//! the kustomization (offline; nothing is applied).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;
use switchyard_config::Config;

/// The kinds a deployment is made of.
const KINDS: [&str; 6] =
    ["StatefulSet", "Deployment", "HorizontalPodAutoscaler", "Service", "ConfigMap", "PodDisruptionBudget"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn k8s_dir() -> PathBuf {
    repo().join("cluster/deploy/k8s")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every non-empty YAML document of a (multi-document) file.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|err| panic!("{}: {err}", path.display())))
        .filter(|value| !value.is_null())
        .collect()
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {value:?}"))
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_else(|| panic!("{what}: expected a list, got {value:?}"))
}

/// A list that may be absent.
fn items(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// The Kubernetes objects of `cluster/deploy/k8s/*.yaml`, the kustomization
/// aside.
struct Manifests {
    objects: Vec<(String, Value)>,
}

impl Manifests {
    fn load() -> Manifests {
        let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
            .filter(|path| path.file_name().is_some_and(|name| name != "kustomization.yaml"))
            .collect();
        files.sort();
        let objects: Vec<(String, Value)> = files
            .iter()
            .flat_map(|path| {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                documents(path).into_iter().map(move |object| (file.clone(), object))
            })
            .collect();
        assert!(!objects.is_empty(), "no manifests in {}", k8s_dir().display());
        Manifests { objects }
    }

    fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
        let kind = kind.to_owned();
        self.objects
            .iter()
            .map(|(_, object)| object)
            .filter(move |object| object["kind"].as_str() == Some(kind.as_str()))
    }

    /// The one object of a kind.
    fn only(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self.of_kind(kind).collect();
        assert_eq!(found.len(), 1, "expected exactly one {kind}");
        found[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .find(|object| object["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named `{name}` in cluster/deploy/k8s"))
    }

    /// Every StatefulSet and Deployment.
    fn workloads(&self) -> Vec<&Value> {
        self.of_kind("StatefulSet").chain(self.of_kind("Deployment")).collect()
    }
}

fn name(object: &Value) -> &str {
    text(&object["metadata"]["name"], "metadata.name")
}

fn containers(workload: &Value) -> &[Value] {
    list(&workload["spec"]["template"]["spec"]["containers"], &format!("{} containers", name(workload)))
}

/// The one container of a workload's pods.
fn container(workload: &Value) -> &Value {
    let all = containers(workload);
    assert_eq!(all.len(), 1, "{}: one container per pod", name(workload));
    &all[0]
}

/// A container's port number by the port's name.
fn port(container: &Value, port_name: &str) -> u16 {
    let found = items(&container["ports"])
        .iter()
        .find(|port| port["name"].as_str() == Some(port_name))
        .unwrap_or_else(|| panic!("container {}: no port named `{port_name}`", text(&container["name"], "name")));
    found["containerPort"].as_u64().unwrap().try_into().unwrap()
}

/// A probe's or Service's `port` / `targetPort`: a name or a number.
fn resolve_port(container: &Value, value: &Value) -> u16 {
    match value.as_str() {
        Some(port_name) => port(container, port_name),
        None => value.as_u64().unwrap().try_into().unwrap(),
    }
}

/// A Service's selector selects the workload's pods, and the workload's
/// own selector does too.
fn selects(selector: &Value, workload: &Value) -> bool {
    let labels = workload["spec"]["template"]["metadata"]["labels"].as_mapping().unwrap();
    let selector = selector.as_mapping().unwrap();
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// The keys a Secret holds (`stringData` and `data`).
fn secret_keys(secret: &Value) -> BTreeSet<String> {
    ["stringData", "data"]
        .iter()
        .filter_map(|field| secret[*field].as_mapping())
        .flat_map(|map| map.keys().map(|key| text(key, "secret key").to_owned()))
        .collect()
}

/// One pod of a workload, as Kubernetes would make it.
struct Pod {
    name: String,
    ip: String,
}

/// The environment a pod's container gets: literal values, the downward
/// API, and Secret keys (stand-in values) by `secretKeyRef` or `envFrom`.
fn pod_env(manifests: &Manifests, container: &Value, pod: &Pod) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for from in items(&container["envFrom"]) {
        let secret = manifests.named("Secret", text(&from["secretRef"]["name"], "envFrom: only secretRef is modelled"));
        for key in secret_keys(secret) {
            env.insert(key.clone(), format!("test-{key}"));
        }
    }
    for var in items(&container["env"]) {
        let var_name = text(&var["name"], "env name").to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => pod.name.clone(),
                "status.podIP" => pod.ip.clone(),
                other => panic!("env {var_name}: fieldRef {other} is not modelled here"),
            }
        } else if var["valueFrom"]["secretKeyRef"].is_mapping() {
            let reference = &var["valueFrom"]["secretKeyRef"];
            let secret = manifests.named("Secret", text(&reference["name"], "secretKeyRef.name"));
            let key = text(&reference["key"], "secretKeyRef.key");
            assert!(secret_keys(secret).contains(key), "env {var_name}: Secret {} has no key {key}", name(secret));
            format!("test-{key}")
        } else {
            panic!("env {var_name}: neither a value, a fieldRef nor a secretKeyRef")
        };
        env.insert(var_name, value);
    }
    env
}

/// Where a workload's pods mount the ConfigMap `switchyard-config`.
fn config_mount(workload: &Value, configmap: &Value) -> String {
    let pod_spec = &workload["spec"]["template"]["spec"];
    let volume = items(&pod_spec["volumes"])
        .iter()
        .find(|volume| volume["configMap"]["name"].as_str() == Some(name(configmap)))
        .unwrap_or_else(|| panic!("{}: no volume of ConfigMap {}", name(workload), name(configmap)));
    let mount = items(&container(workload)["volumeMounts"])
        .iter()
        .find(|mount| mount["name"] == volume["name"])
        .unwrap_or_else(|| panic!("{}: the ConfigMap's volume is not mounted", name(workload)));
    text(&mount["mountPath"], "mountPath").to_owned()
}

/// A node as one pod of `workload` starts it.
struct Launched {
    role: String,
    /// The files `switchyard serve` was handed, in order.
    layers: Vec<String>,
    config: Config,
    env: HashMap<String, String>,
}

/// Runs the pod's command (`/bin/sh <mount>/launch.sh <role>`) on the
/// ConfigMap's files with `echo` as the binary, then validates the layers
/// it names, with the pod's environment.
fn launch(manifests: &Manifests, workload: &Value, pod: &Pod) -> Launched {
    let configmap = manifests.named("ConfigMap", "switchyard-config");
    let container = container(workload);
    let command: Vec<&str> = list(&container["command"], "command").iter().map(|arg| text(arg, "command")).collect();
    let mount = config_mount(workload, configmap);
    let [shell, script, role] = command.as_slice() else {
        panic!("{}: expected [/bin/sh, {mount}/launch.sh, ROLE], got {command:?}", name(workload));
    };
    assert_eq!(*shell, "/bin/sh");
    assert_eq!(*script, format!("{mount}/launch.sh"), "{}: runs the ConfigMap's launcher", name(workload));

    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    for (file, content) in configmap["data"].as_mapping().unwrap() {
        std::fs::write(etc.join(text(file, "data key")), text(content, "data value")).unwrap();
    }
    let env = pod_env(manifests, container, pod);
    let output = Command::new("sh")
        .arg(etc.join("launch.sh"))
        .arg(role)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env)
        .env("SWITCHYARD_ETC", &etc)
        .env("SWITCHYARD_RUN", &run)
        .env("SWITCHYARD_BIN", "echo")
        .output()
        .expect("sh runs launch.sh");
    assert!(
        output.status.success(),
        "launch.sh {role} for pod {}: {}",
        pod.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let args: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(args.first(), Some(&"serve"), "launch.sh runs `switchyard serve`: {stdout}");
    assert_eq!(args.get(1), Some(&"--config"), "{stdout}");
    let mut layers = Vec::new();
    for pair in args[1..].chunks(2) {
        let [flag, path] = pair else { panic!("a flag without its file: {stdout}") };
        assert!((*flag == "--config" && layers.is_empty()) || *flag == "--overlay", "unexpected `{flag}`: {stdout}");
        layers.push(read(Path::new(path)));
    }
    assert_eq!(layers.first().map(String::as_str), configmap["data"]["base.yaml"].as_str(), "base.yaml is the config");
    assert_eq!(
        layers.get(1).map(String::as_str),
        configmap["data"][format!("{role}.yaml").as_str()].as_str(),
        "the role's overlay comes next"
    );
    let texts: Vec<&str> = layers.iter().map(String::as_str).collect();
    let config = Config::from_layers(&texts, &env)
        .unwrap_or_else(|err| panic!("pod {} ({role}): the config launch.sh assembles is refused: {err}", pod.name));
    Launched { role: (*role).to_owned(), layers, config, env }
}

/// The ports a node binds are the ones its container declares.
fn check_ports(container: &Value, config: &Config, pod: &Pod) {
    assert_eq!(config.server.listen.port(), port(container, "http"), "pod {}: server.listen", pod.name);
    assert!(
        config.server.listen.ip().is_unspecified(),
        "pod {}: server.listen must take outside connections",
        pod.name
    );
    assert_eq!(config.cluster.listen.port(), port(container, "grpc"), "pod {}: cluster.listen", pod.name);
    assert!(
        config.cluster.listen.ip().is_unspecified(),
        "pod {}: cluster.listen must take peers' connections",
        pod.name
    );
}

#[test]
fn every_document_is_a_named_object_and_every_kind_is_there() {
    let manifests = Manifests::load();
    let namespace = manifests.only("Namespace");
    let mut seen = BTreeSet::new();
    for (file, object) in &manifests.objects {
        for field in ["apiVersion", "kind"] {
            assert!(object[field].as_str().is_some_and(|v| !v.is_empty()), "{file}: a document without {field}");
        }
        let kind = text(&object["kind"], "kind");
        assert!(
            object["metadata"]["name"].as_str().is_some_and(|v| !v.is_empty()),
            "{file}: a {kind} without metadata.name"
        );
        assert!(seen.insert((kind.to_owned(), name(object).to_owned())), "{file}: {kind} {} twice", name(object));
        if kind != "Namespace" {
            // Applied with `kubectl apply -f` too, not only with -k.
            assert_eq!(
                object["metadata"]["namespace"],
                namespace["metadata"]["name"],
                "{file}: {kind} {}",
                name(object)
            );
        }
    }
    for kind in KINDS {
        assert!(manifests.of_kind(kind).next().is_some(), "no {kind} in cluster/deploy/k8s");
    }
}

#[test]
fn the_kustomization_applies_every_manifest_but_the_example_secret() {
    let kustomization = documents(&k8s_dir().join("kustomization.yaml"));
    let [kustomization] = kustomization.as_slice() else { panic!("one document") };
    assert_eq!(kustomization["kind"].as_str(), Some("Kustomization"));
    let listed: BTreeSet<&str> =
        list(&kustomization["resources"], "resources").iter().map(|r| text(r, "resource")).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|file| file.ends_with(".yaml") && file != "kustomization.yaml")
        .collect();
    let expected: BTreeSet<&str> =
        on_disk.iter().map(String::as_str).filter(|file| !file.contains("example")).collect();
    assert_eq!(listed, expected, "resources: every manifest, never an example (it would overwrite real keys)");
    assert!(on_disk.contains("secrets.example.yaml"));
    let manifests = Manifests::load();
    assert_eq!(kustomization["namespace"], manifests.only("Namespace")["metadata"]["name"]);
}

#[test]
fn voters_have_stable_names_a_headless_service_a_client_service_and_a_budget() {
    let manifests = Manifests::load();
    let voters = manifests.only("StatefulSet");
    let spec = &voters["spec"];
    assert!(selects(&spec["selector"]["matchLabels"], voters), "the StatefulSet selects its own pods");
    assert_eq!(spec["replicas"].as_u64(), Some(3), "three voters");
    assert_eq!(
        spec["podManagementPolicy"].as_str(),
        Some("Parallel"),
        "all voters start together: raft needs a quorum"
    );

    let headless = manifests.named("Service", text(&spec["serviceName"], "serviceName"));
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"), "serviceName names a headless Service");
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true),
        "peers resolve before they are ready"
    );
    assert!(selects(&headless["spec"]["selector"], voters));
    let container = container(voters);
    let grpc = port(container, "grpc");
    assert!(
        items(&headless["spec"]["ports"]).iter().any(|p| resolve_port(container, &p["targetPort"]) == grpc),
        "the headless Service carries the raft port"
    );

    let clients: Vec<&Value> =
        manifests.of_kind("Service").filter(|service| service["spec"]["clusterIP"].as_str() != Some("None")).collect();
    let [client] = clients.as_slice() else { panic!("one client Service, got {}", clients.len()) };
    assert!(selects(&client["spec"]["selector"], voters), "the client Service sends to the voters");
    let client_ports = items(&client["spec"]["ports"]);
    assert!(
        client_ports.iter().any(|p| p["port"].as_u64() == Some(8080)
            && resolve_port(container, &p["targetPort"]) == port(container, "http"))
    );
    assert!(
        client_ports.iter().all(|p| resolve_port(container, &p["targetPort"]) != grpc),
        "the internal port stays internal"
    );

    let budget = manifests.only("PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], voters), "the budget covers the voters");

    let claims = list(&spec["volumeClaimTemplates"], "volumeClaimTemplates");
    let claim = text(&claims[0]["metadata"]["name"], "claim name");
    assert!(
        items(&container["volumeMounts"]).iter().any(|m| m["name"].as_str() == Some(claim)),
        "the volume claim is mounted"
    );
}

#[test]
fn classifiers_scale_on_cpu_from_one_to_ten() {
    let manifests = Manifests::load();
    let classifiers = manifests.only("Deployment");
    assert!(selects(&classifiers["spec"]["selector"]["matchLabels"], classifiers));
    assert!(classifiers["spec"]["replicas"].is_null(), "the autoscaler owns the replica count");
    let hpa = manifests.only("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"].as_str(), Some("Deployment"));
    assert_eq!(target["name"].as_str(), Some(name(classifiers)), "the autoscaler scales the classifier Deployment");
    assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(1));
    assert_eq!(hpa["spec"]["maxReplicas"].as_u64(), Some(10));
    assert!(
        items(&hpa["spec"]["metrics"]).iter().any(|m| m["resource"]["name"].as_str() == Some("cpu")),
        "scales on CPU"
    );
}

#[test]
fn every_container_requests_resources_and_probes_an_endpoint_its_node_serves() {
    let manifests = Manifests::load();
    // The routes each kind of node serves, from the code.
    let ingress_routes = read(&repo().join("crates/switchyard-ingress/src/http.rs"));
    let classifier_routes = read(&repo().join("crates/switchyard-ingress/src/classifier_node.rs"));
    for workload in manifests.workloads() {
        for container in containers(workload) {
            let what = format!("{} container {}", name(workload), text(&container["name"], "name"));
            for resource in ["cpu", "memory"] {
                assert!(
                    !container["resources"]["requests"][resource].is_null(),
                    "{what}: resources.requests.{resource} (the autoscaler and the scheduler need it)"
                );
            }
            assert!(!container["resources"]["limits"]["memory"].is_null(), "{what}: a memory limit");
            for probe in ["readinessProbe", "livenessProbe"] {
                let get = &container[probe]["httpGet"];
                let path = text(&get["path"], &format!("{what}: {probe}.httpGet.path"));
                assert_eq!(
                    resolve_port(container, &get["port"]),
                    port(container, "http"),
                    "{what}: {probe} on the HTTP port"
                );
                let routes = match text(&container["command"][2], "role") {
                    "voter" => &ingress_routes,
                    _ => &classifier_routes,
                };
                let served = routes.contains(&format!(".route(\"{path}\""));
                assert!(served, "{what}: {probe} asks for {path}, which the node does not serve");
            }
        }
    }
}

#[test]
fn each_voter_starts_as_the_peer_that_base_yaml_names() {
    let manifests = Manifests::load();
    let voters = manifests.only("StatefulSet");
    let container = container(voters);
    let namespace = name(manifests.only("Namespace"));
    let service = text(&voters["spec"]["serviceName"], "serviceName");
    let replicas = voters["spec"]["replicas"].as_u64().unwrap();
    let data_mount = items(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"] == voters["spec"]["volumeClaimTemplates"][0]["metadata"]["name"])
        .map(|m| text(&m["mountPath"], "mountPath"))
        .unwrap();
    let containerfile = read(&repo().join("Containerfile"));
    for ordinal in 0..replicas {
        let pod = Pod { name: format!("{}-{ordinal}", name(voters)), ip: format!("10.244.0.{}", 10 + ordinal) };
        let node = launch(&manifests, voters, &pod);
        let config = &node.config;
        assert_eq!(node.role, "voter");
        let roles = config.cluster.roles;
        assert!(
            roles.ingress && roles.voter,
            "pod {}: a voter serves the API and holds raft state: {:?}",
            pod.name,
            roles.names()
        );
        assert_eq!(config.cluster.node_id, ordinal + 1, "pod {}: node id from the ordinal", pod.name);
        assert_eq!(config.cluster.bootstrap, ordinal == 0, "pod {}: only the first voter forms the cluster", pod.name);
        assert_eq!(config.cluster.peers.len() as u64, replicas, "one peer per StatefulSet replica");
        let peer = config.cluster.peers.iter().find(|p| p.id == config.cluster.node_id).unwrap();
        assert!(
            peer.raft.starts_with(&format!("{}.{service}.{namespace}.svc.", pod.name)),
            "peer {}: `{}` is not the stable name of pod {}",
            peer.id,
            peer.raft,
            pod.name
        );
        assert_eq!(
            config.cluster.advertise.as_deref(),
            Some(peer.raft.as_str()),
            "pod {}: advertises its peer entry",
            pod.name
        );
        assert_eq!(config.cluster.http_advertise.as_deref(), Some(peer.http.as_str()), "pod {}", pod.name);
        assert!(peer.raft.ends_with(&format!(":{}", port(container, "grpc"))), "{}", peer.raft);
        assert!(peer.http.ends_with(&format!(":{}", port(container, "http"))), "{}", peer.http);
        check_ports(container, config, &pod);
        assert_eq!(config.server.data_dir, Path::new(data_mount), "raft state on the volume claim");
        assert!(config.auth.admin.is_some());
        assert!(config.auth.cluster_secret.is_some(), "every pod has the cluster secret");
        assert!(!config.demo_active());
        for provider in &config.providers {
            assert!(
                provider.available,
                "provider {}: its key ({:?}) does not reach the voters",
                provider.name, provider.api_key_env
            );
        }
        for dir in [&config.classifier.model_dir, &config.classifier.head_dir] {
            let dir = dir.to_str().unwrap().trim_end_matches('/');
            assert!(
                containerfile.contains(&format!(" {dir}/")),
                "classifier files at {dir}: the Containerfile puts them elsewhere"
            );
        }
        assert_eq!(node.layers.len(), 3, "base, role, the pod's own");
        assert!(node.env.contains_key("SWITCHYARD_ADMIN_TOKEN"));
    }
}

#[test]
fn each_classifier_pod_starts_as_a_classifier_only_node_that_finds_the_voters() {
    let manifests = Manifests::load();
    let voters = manifests.only("StatefulSet");
    let voter = launch(&manifests, voters, &Pod { name: format!("{}-0", name(voters)), ip: "10.244.0.10".to_owned() });
    let voter_raft: BTreeSet<&str> = voter.config.cluster.peers.iter().map(|p| p.raft.as_str()).collect();
    let voter_ids: BTreeSet<u64> = voter.config.cluster.peers.iter().map(|p| p.id).collect();

    let classifiers = manifests.only("Deployment");
    let container = container(classifiers);
    let grpc = port(container, "grpc");
    let pods = [
        Pod { name: format!("{}-7d9f8b6c5-x2k4q", name(classifiers)), ip: "10.244.3.7".to_owned() },
        Pod { name: format!("{}-7d9f8b6c5-hq9zt", name(classifiers)), ip: "fd00:10:244::7".to_owned() },
    ];
    let mut ids = BTreeSet::new();
    for pod in &pods {
        let node = launch(&manifests, classifiers, pod);
        let config = &node.config;
        assert_eq!(node.role, "classifier");
        assert!(config.cluster.roles.classifier_only(), "pod {}: roles {:?}", pod.name, config.cluster.roles.names());
        assert!(!config.cluster.seeds.is_empty());
        for seed in &config.cluster.seeds {
            assert!(voter_raft.contains(seed.as_str()), "seed {seed} is not a voter's gRPC address ({voter_raft:?})");
        }
        let address = if pod.ip.contains(':') { format!("[{}]:{grpc}", pod.ip) } else { format!("{}:{grpc}", pod.ip) };
        assert_eq!(
            config.cluster.advertise.as_deref(),
            Some(address.as_str()),
            "pod {}: advertises its pod IP",
            pod.name
        );
        assert!(config.cluster.peers.is_empty() && !config.cluster.bootstrap, "pod {}: not a raft member", pod.name);
        assert!(
            !voter_ids.contains(&config.cluster.node_id),
            "pod {}: node id {} is a voter's",
            pod.name,
            config.cluster.node_id
        );
        assert!(ids.insert(config.cluster.node_id), "two classifier pods with node id {}", config.cluster.node_id);
        check_ports(container, config, pod);
        assert!(config.auth.admin.is_some());
        assert!(config.auth.cluster_secret.is_some(), "every pod has the cluster secret");

        // The validation above has teeth: the same layers without seeds are refused.
        let mut layers: Vec<&str> = node.layers.iter().map(String::as_str).collect();
        layers.push("cluster: { seeds: [] }");
        let err = Config::from_layers(&layers, &node.env).unwrap_err().to_string();
        assert!(err.contains("cluster.seeds"), "{err}");
    }
}

#[test]
fn the_example_secret_holds_a_placeholder_for_every_key_a_node_reads() {
    let manifests = Manifests::load();
    let secret = manifests.only("Secret");
    let (file, _) = manifests.objects.iter().find(|(_, object)| object["kind"].as_str() == Some("Secret")).unwrap();
    assert!(file.contains("example"), "{file}: the only Secret in the repository is an example");
    let keys = secret_keys(secret);
    let voters = manifests.only("StatefulSet");
    let node = launch(&manifests, voters, &Pod { name: format!("{}-0", name(voters)), ip: "10.244.0.10".to_owned() });
    let mut wanted: BTreeSet<String> = node.config.providers.iter().filter_map(|p| p.api_key_env.clone()).collect();
    wanted.insert("SWITCHYARD_ADMIN_TOKEN".to_owned());
    let missing: Vec<&String> = wanted.difference(&keys).collect();
    assert!(missing.is_empty(), "the example Secret lacks {missing:?}");
    for (key, value) in secret["stringData"].as_mapping().unwrap() {
        let value = text(value, "stringData value");
        assert!(value.starts_with("REPLACE-ME"), "{}: `{value}` does not look like a placeholder", text(key, "key"));
    }
    assert!(secret["data"].is_null(), "placeholders go in stringData, readable");
}

#[test]
fn the_container_build_fetches_the_encoder_and_builds_the_binary() {
    let containerfile = read(&repo().join("Containerfile"));
    for needle in [
        "FROM rust:1-bookworm AS builder",
        "models/fetch.sh",
        "cargo build --release --locked -p switchyard",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "models/cache/all-minilm-l6-v2/",
        "models/moe-router/",
        "EXPOSE 8080 9081",
        "ENTRYPOINT [\"switchyard\"]",
    ] {
        assert!(containerfile.contains(needle), "Containerfile: no `{needle}`");
    }
    let user = containerfile.lines().rev().find_map(|line| line.strip_prefix("USER ")).expect("a USER line");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "the image runs as `{user}`, not as a non-root user");

    let ignored: Vec<String> = read(&repo().join(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_matches('/').to_owned())
        .collect();
    for needed in ["target", "models/cache", ".git"] {
        assert!(ignored.iter().any(|line| line == needed), ".dockerignore must exclude {needed}");
    }
    for kept in
        ["Cargo.toml", "Cargo.lock", "crates", "tests", "proto", "models", "models/fetch.sh", "models/moe-router"]
    {
        assert!(!ignored.iter().any(|line| line == kept), ".dockerignore excludes {kept}, which the build needs");
    }
}

/// `kubectl kustomize` renders offline; skipped where kubectl is absent.
#[test]
fn kubectl_renders_the_kustomization_when_installed() {
    let output = match Command::new("kubectl").arg("kustomize").arg(k8s_dir()).output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => panic!("kubectl: {err}"),
    };
    assert!(output.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&output.stderr));
    let rendered = String::from_utf8(output.stdout).unwrap();
    let mut kinds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|object| !object.is_null())
        .map(|object| text(&object["kind"], "kind").to_owned())
        .collect();
    kinds.sort();
    let manifests = Manifests::load();
    let mut expected: Vec<String> = manifests
        .objects
        .iter()
        .map(|(_, object)| text(&object["kind"], "kind").to_owned())
        .filter(|kind| kind != "Secret")
        .collect();
    expected.sort();
    assert_eq!(kinds, expected, "kubectl kustomize renders every manifest but the example Secret");
}
