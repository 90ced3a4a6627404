#!/usr/bin/env python3
"""Validates Kubernetes and Istio manifests offline; run by tests/deploy_manifests.rs.

Usage: validate_manifests.py [--hardening] FILE...
       validate_manifests.py --sentinel-patch SENTINEL_FILE DEPLOYMENT_FILE

Every YAML document in every FILE must validate, or the script exits 1:
  - Kubernetes kinds against the Kubernetes OpenAPI schemas shipped by the
    kubernetes-validate package, strictly (unknown fields fail);
  - security.istio.io/v1 AuthorizationPolicy, install.istio.io/v1alpha1 IstioOperator,
    networking.istio.io/v1alpha3 EnvoyFilter and kind.x-k8s.io/v1alpha4 Cluster against
    the JSON schemas in deploy/schemas/;
  - Istio mesh config (IstioOperator spec.meshConfig, and the `mesh` key of the `istio`
    ConfigMap in istio-system) against deploy/schemas/meshconfig.istio.io-v1alpha1.json.
A document of any other kind, one without a schema, fails.

With --sentinel-patch, the `kubectl patch … --type json -p '[…]'` that the comment of
SENTINEL_FILE (deploy/redis-sentinel.yaml) gives is applied to the Deployment of
DEPLOYMENT_FILE (deploy/jwt-revoker.yaml): the result must validate, have no
JWT_REVOKER_STORE_URL (it cannot be combined with store.sentinels), and project the
Sentinel config and the Redis password into its config volume.

With --hardening, the documents of all FILEs together (deploy/) must also follow the
deployment rules of hardening_errors: Redis (deploy/redis.yaml, and the Sentinel variant
deploy/redis-sentinel.yaml) password-protected (requirepass from a Secret, also in
jwt-revoker's store URL, never in a ConfigMap), persistent (a StatefulSet with a
PersistentVolumeClaim, no emptyDir; appendonly yes, appendfsync everysec,
maxmemory-policy noeviction) and covered by a PodDisruptionBudget; with Sentinel also
three pods each with a sentinel, masterauth from a Secret, min-replicas-to-write >= 1 and
min-replicas-max-lag; NetworkPolicies letting only jwt-revoker's pods reach Redis 6379
(with Sentinel: 6379 and 26379, also from the Sentinel pods themselves) and only this
namespace reach the admin port 9192 while the authorization port 9191 stays reachable;
jwt-revoker's readiness probe an HTTP GET of /readyz on the metrics port, and a liveness
probe.
"""

import json
import pathlib
import sys
import tomllib
import urllib.parse

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "schemas"
KUBERNETES_VERSION = "1.33.0"
REPO_SCHEMAS = {
    ("security.istio.io/v1", "AuthorizationPolicy"): "authorizationpolicy.security.istio.io-v1.json",
    ("install.istio.io/v1alpha1", "IstioOperator"): "istiooperator.install.istio.io-v1alpha1.json",
    ("kind.x-k8s.io/v1alpha4", "Cluster"): "cluster.kind.x-k8s.io-v1alpha4.json",
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): "envoyfilter.networking.istio.io-v1alpha3.json",
}
MESH_CONFIG = "meshconfig.istio.io-v1alpha1.json"


def schema_errors(document, schema_file):
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def validate(document):
    """The list of problems of one document (empty when it is valid)."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in REPO_SCHEMAS:
        errors = schema_errors(document, REPO_SCHEMAS[key])
        if key[1] == "IstioOperator" and not errors:
            mesh = document["spec"].get("meshConfig", {})
            errors += [f"spec.meshConfig.{e}" for e in schema_errors(mesh, MESH_CONFIG)]
        return errors
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]}"]
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(str(p) for p in error.path) or '<root>'}: {error.message}"]
    metadata = document.get("metadata", {})
    if (
        key == ("v1", "ConfigMap")
        and metadata.get("name") == "istio"
        and metadata.get("namespace") == "istio-system"
    ):
        mesh = yaml.safe_load(document.get("data", {}).get("mesh", "")) or {}
        return [f"data.mesh.{e}" for e in schema_errors(mesh, MESH_CONFIG)]
    return []


REDIS = {"app.kubernetes.io/name": "redis"}
SENTINEL = {"app.kubernetes.io/name": "redis-sentinel"}
JWT_REVOKER = {"app.kubernetes.io/name": "jwt-revoker"}
REDIS_PORT, AUTHZ_PORT, ADMIN_PORT, METRICS_PORT = 6379, 9191, 9192, 9090
SENTINEL_PORT = 26379


def selects(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions) selects `labels`."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_template(workload):
    return workload.get("spec", {}).get("template", {})


def containers(workload):
    return pod_template(workload).get("spec", {}).get("containers", [])


def named_ports(workload):
    return {
        port["name"]: port["containerPort"]
        for container in containers(workload)
        for port in container.get("ports", [])
        if "name" in port
    }


def option(args, name):
    """The value after `name` in a container's args (None when absent)."""
    for flag, value in zip(args, args[1:]):
        if flag == name:
            return value
    return None


def secret_env(container, reference):
    """Whether `reference` is `$(VAR)` for an env var of `container` read from a Secret."""
    if not (reference or "").startswith("$(") or not reference.endswith(")"):
        return False
    name = reference[2:-1]
    return any(
        env.get("name") == name and "secretKeyRef" in env.get("valueFrom", {})
        for env in container.get("env", [])
    )


def rule_ports(rule, ports_by_name):
    """The ports an ingress rule admits (None: every port)."""
    if not rule.get("ports"):
        return None
    admitted = set()
    for port in rule["ports"]:
        if "port" not in port:
            return None
        first = ports_by_name.get(port["port"], port["port"])
        admitted.update(range(first, port.get("endPort", first) + 1) if isinstance(first, int) else {first})
    return admitted


def admitting_rules(policies, labels, port, ports_by_name):
    """The ingress rules of the policies selecting `labels` (pods of namespace jwt-revoker)
    that admit `port`."""
    return [
        rule
        for policy in policies
        if policy["metadata"].get("namespace") == "jwt-revoker"
        and selects(policy["spec"].get("podSelector"), labels)
        for rule in policy["spec"].get("ingress") or []
        if (admitted := rule_ports(rule, ports_by_name)) is None or port in admitted
    ]


def only_pods_of_this_namespace(rule, *selectors):
    """Whether every peer of `rule` is a pod of the policy's namespace (matching one of
    `selectors`, when given)."""
    peers = rule.get("from")
    if not peers:
        return False  # no `from`: every source
    return all(
        set(peer) == {"podSelector"}
        and (
            not selectors
            or any(
                selector.items() <= (peer["podSelector"].get("matchLabels") or {}).items()
                for selector in selectors
            )
        )
        for peer in peers
    )


def workloads_of(documents, labels):
    """The workloads whose pods carry `labels`."""
    return [
        d for d in documents
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod")
        and selects({"matchLabels": labels}, pod_template(d).get("metadata", {}).get("labels", {}))
    ]


def redis_errors(documents):
    errors = []
    workloads = workloads_of(documents, REDIS)
    if [d["kind"] for d in workloads] != ["StatefulSet"]:
        return [f"Redis: want exactly one StatefulSet, found {[d['kind'] for d in workloads]}"]
    errors += data_node_errors(documents, workloads[0])
    sentinels = workloads_of(documents, SENTINEL)
    if sentinels:
        if [d["kind"] for d in sentinels] != ["StatefulSet"]:
            return errors + [
                f"Redis Sentinel: want one StatefulSet, found {[d['kind'] for d in sentinels]}"
            ]
        errors += data_node_errors(documents, sentinels[0])
        errors += sentinel_errors(sentinels[0])
    return errors


def sentinel_errors(workload):
    """What the Sentinel StatefulSet needs beyond any Redis data node's settings."""
    name = f"StatefulSet/{workload['metadata']['name']}"
    errors = []
    if workload["spec"].get("replicas", 1) < 3:
        errors.append(f"{name}: want 3 or more pods (a quorum of sentinels survives one loss)")
    if not any(c["name"] == "sentinel" for c in containers(workload)):
        errors.append(f"{name}: no container named sentinel")
    redis = next((c for c in containers(workload) if c["name"] == "redis"), {})
    args = redis.get("args", [])
    if not secret_env(redis, option(args, "--masterauth")):
        errors.append(f"{name}: --masterauth must be $(VAR) of an env var from a Secret")
    to_write = option(args, "--min-replicas-to-write")
    if not (to_write or "").isdigit() or int(to_write) < 1:
        errors.append(
            f"{name}: want --min-replicas-to-write 1 or more (a master alone refuses writes it "
            f"would lose), have {to_write}"
        )
    if option(args, "--min-replicas-max-lag") is None:
        errors.append(f"{name}: no --min-replicas-max-lag")
    return errors


def data_node_errors(documents, redis):
    """The rules every Redis data node's StatefulSet follows."""
    errors = []
    name = f"StatefulSet/{redis['metadata']['name']}"
    claims = {t["metadata"]["name"] for t in redis["spec"].get("volumeClaimTemplates", [])}
    volumes = pod_template(redis)["spec"].get("volumes", [])
    if any("emptyDir" in v for v in volumes):
        errors.append(f"{name}: an emptyDir volume (Redis data must be on a PersistentVolumeClaim)")
    container = next((c for c in containers(redis) if c["name"] == "redis"), None)
    if container is None:
        return errors + [f"{name}: no container named redis"]
    args = container.get("args", [])
    data_dir = option(args, "--dir")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if mounts.get(data_dir) not in claims:
        errors.append(f"{name}: --dir {data_dir} is not a volumeClaimTemplate's mount")
    if not secret_env(container, option(args, "--requirepass")):
        errors.append(f"{name}: --requirepass must be $(VAR) of an env var from a Secret")
    for flag, want in [
        ("--appendonly", "yes"),
        ("--appendfsync", "everysec"),
        ("--maxmemory-policy", "noeviction"),
    ]:
        if option(args, flag) != want:
            errors.append(f"{name}: want {flag} {want}, have {option(args, flag)}")
    labels = pod_template(redis)["metadata"]["labels"]
    if not any(
        d.get("kind") == "PodDisruptionBudget" and selects(d["spec"].get("selector"), labels)
        for d in documents
    ):
        errors.append(f"{name}: no PodDisruptionBudget selects its pods")
    return errors


def network_errors(documents):
    errors = []
    policies = [
        d for d in documents
        if d.get("kind") == "NetworkPolicy"
        and d["metadata"].get("namespace") == "jwt-revoker"
        and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])
    ]
    sentinel = bool(workloads_of(documents, SENTINEL))
    pods = [("Redis", REDIS), ("jwt-revoker", JWT_REVOKER)]
    if sentinel:
        pods.append(("Redis Sentinel", SENTINEL))
    for pod, labels in pods:
        if not any(selects(p["spec"].get("podSelector"), labels) for p in policies):
            errors.append(f"no ingress NetworkPolicy selects the {pod} pods")
    workloads = {
        d["metadata"]["name"]: d for d in documents if d.get("kind") in ("Deployment", "StatefulSet")
    }
    redis_ports = named_ports(workloads.get("redis", {}))
    for rule in admitting_rules(policies, REDIS, REDIS_PORT, redis_ports):
        if not only_pods_of_this_namespace(rule, JWT_REVOKER):
            errors.append(f"Redis {REDIS_PORT} is open to more than jwt-revoker's pods: {rule}")
    if not admitting_rules(policies, REDIS, REDIS_PORT, redis_ports):
        errors.append(f"no NetworkPolicy lets jwt-revoker reach Redis {REDIS_PORT}")
    if sentinel:
        sentinel_ports = named_ports(workloads.get("redis-sentinel", {}))
        for port in (REDIS_PORT, SENTINEL_PORT):
            rules = admitting_rules(policies, SENTINEL, port, sentinel_ports)
            for rule in rules:
                if not only_pods_of_this_namespace(rule, JWT_REVOKER, SENTINEL):
                    errors.append(
                        f"Redis Sentinel {port} is open to more than jwt-revoker's and its own "
                        f"pods: {rule}"
                    )
            if not rules:
                errors.append(f"no NetworkPolicy lets jwt-revoker reach Redis Sentinel {port}")
    ports = named_ports(workloads.get("jwt-revoker", {}))
    for rule in admitting_rules(policies, JWT_REVOKER, ADMIN_PORT, ports):
        if not only_pods_of_this_namespace(rule):
            errors.append(f"admin port {ADMIN_PORT} is open beyond the namespace: {rule}")
    if not admitting_rules(policies, JWT_REVOKER, AUTHZ_PORT, ports):
        errors.append(f"no NetworkPolicy lets the mesh reach the authorization port {AUTHZ_PORT}")
    return errors


def jwt_revoker_errors(documents):
    errors = []
    deployment = next(
        (d for d in documents if d.get("kind") == "Deployment" and d["metadata"]["name"] == "jwt-revoker"),
        None,
    )
    if deployment is None:
        return ["no Deployment/jwt-revoker"]
    container = next(c for c in containers(deployment) if c["name"] == "jwt-revoker")
    ports = named_ports(deployment)
    env = [e for e in container.get("env", [])]
    store = next((e for e in env if e["name"] == "JWT_REVOKER_STORE_URL"), None)
    if store is None:
        errors.append("Deployment/jwt-revoker: no JWT_REVOKER_STORE_URL")
    else:
        password = urllib.parse.urlsplit(store.get("value", "")).password
        earlier = env[: env.index(store)]
        if not secret_env({"env": earlier}, password):
            errors.append(
                "Deployment/jwt-revoker: JWT_REVOKER_STORE_URL's password must be $(VAR) of an "
                "earlier env var from a Secret"
            )
    probe = container.get("readinessProbe", {}).get("httpGet", {})
    if probe.get("path") != "/readyz" or ports.get(probe.get("port"), probe.get("port")) != METRICS_PORT:
        errors.append(f"Deployment/jwt-revoker: readiness must be GET /readyz on {METRICS_PORT}")
    if "livenessProbe" not in container:
        errors.append("Deployment/jwt-revoker: no liveness probe")
    for config_map in (d for d in documents if d.get("kind") == "ConfigMap"):
        for key, text in (config_map.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            store = tomllib.loads(text).get("store", {})
            where = f"ConfigMap/{config_map['metadata']['name']}"
            url = store.get("url")
            if url and urllib.parse.urlsplit(url).password:
                errors.append(f"{where}: a password in store.url")
            for key in ("password", "sentinel_password"):
                if key in store:
                    errors.append(f"{where}: a password in store.{key} (use store.{key}_file)")
            for key in ("sentinels", "cluster_nodes"):
                if any(urllib.parse.urlsplit(u).password for u in store.get(key, [])):
                    errors.append(f"{where}: a password in store.{key}")
    return errors


def hardening_errors(documents):
    """The problems of the deployment as a whole (empty when it follows every rule)."""
    return redis_errors(documents) + network_errors(documents) + jwt_revoker_errors(documents)


def json_patch(document, operations):
    """Applies `remove` / `replace` / `add` operations of a JSON patch (RFC 6902)."""
    for operation in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key = int(last) if isinstance(target, list) and last != "-" else last
        if operation["op"] == "remove":
            del target[key]
        elif operation["op"] == "replace":
            target[key] = operation["value"]
        elif operation["op"] == "add" and isinstance(target, list):
            target.insert(len(target) if key == "-" else key, operation["value"])
        elif operation["op"] == "add":
            target[key] = operation["value"]
        else:
            raise ValueError(f"unsupported operation {operation['op']}")
    return document


def sentinel_patch_errors(sentinel_file, deployment_file):
    """The problems of the Deployment after the patch the Sentinel file's comment gives."""
    lines = pathlib.Path(sentinel_file).read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if "kubectl" in l and "patch deployment jwt-revoker" in l), None)
    if start is None:
        return [f"{sentinel_file}: no `kubectl -n jwt-revoker patch deployment jwt-revoker` in its comment"]
    patch = []
    for line in lines[start:]:
        text = line.lstrip("#").strip()
        patch.append(text)
        if text.endswith("]'"):
            break
    body = " ".join(patch)
    body = body[body.index("-p '") + 4 : body.rindex("'")]
    deployment = next(
        d for d in yaml.safe_load_all(pathlib.Path(deployment_file).read_text())
        if d and d.get("kind") == "Deployment"
    )
    try:
        patched = json_patch(deployment, json.loads(body))
    except (KeyError, IndexError, ValueError) as error:
        return [f"the patch does not apply to {deployment_file}: {error!r}"]
    errors = validate(patched)
    container = next(c for c in containers(patched) if c["name"] == "jwt-revoker")
    if any(e["name"] == "JWT_REVOKER_STORE_URL" for e in container.get("env", [])):
        errors.append("the patched Deployment still sets JWT_REVOKER_STORE_URL")
    mounted = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    config = next((v for v in pod_template(patched)["spec"].get("volumes", []) if v["name"] == "config"), {})
    sources = config.get("projected", {}).get("sources", [])
    if mounted.get("config") != "/etc/jwt-revoker":
        errors.append("the config volume is not mounted at /etc/jwt-revoker")
    if {"configMap": {"name": "jwt-revoker-config-sentinel"}} not in sources:
        errors.append("the config volume does not project ConfigMap jwt-revoker-config-sentinel")
    if not any(
        s.get("secret", {}).get("name") == "jwt-revoker-redis"
        and {"key": "password", "path": "redis-password"} in s["secret"].get("items", [])
        for s in sources
    ):
        errors.append("the config volume does not project the Redis password as redis-password")
    return errors


def main(args):
    if args[:1] == ["--sentinel-patch"] and len(args) == 3:
        errors = sentinel_patch_errors(args[1], args[2])
        for error in errors:
            print(f"FAIL sentinel patch: {error}")
        if not errors:
            print("ok   sentinel patch")
        return 1 if errors else 0
    hardening = "--hardening" in args
    paths = [a for a in args if a != "--hardening"]
    failed = False
    everything = []
    for path in paths:
        documents = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
        everything += documents
        if not documents:
            print(f"FAIL {path}: no YAML documents")
            failed = True
        for document in documents:
            name = document.get("metadata", {}).get("name") or document.get("name", "?")
            what = f"{path}: {document.get('kind')}/{name}"
            errors = validate(document)
            for error in errors:
                print(f"FAIL {what}: {error}")
            if errors:
                failed = True
            else:
                print(f"ok   {what}")
    if hardening:
        errors = hardening_errors(everything)
        for error in errors:
            print(f"FAIL hardening: {error}")
        if errors:
            failed = True
        else:
            print("ok   hardening")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
