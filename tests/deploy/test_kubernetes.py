"""deploy/kubernetes, checked offline: every manifest against the current
Kubernetes schema (kubernetes-validate, strict: unknown fields are errors),
and the manifests against hanode itself: the probes hit the agent's /livez and
/readyz on the metrics port the ConfigMap sets, the ConfigMap's config is
valid once the container's entry point has merged what the pod gives it, and
every path the config names is mounted from the Secret it belongs to."""

from __future__ import annotations

import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from hanode import config, container

KUBE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OPTIONAL = {"secret.example.yaml", "etcd-statefulset.yaml"}  # see kustomization.yaml


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBE / name).read_text()) if d]


def manifest(kind: str) -> dict:
    found = [d for f in sorted(KUBE.glob("*.yaml")) if f.name != "kustomization.yaml"
             for d in documents(f.name) if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


MANIFESTS = sorted(f.name for f in KUBE.glob("*.yaml") if f.name != "kustomization.yaml")


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_for_the_current_kubernetes(name):
    version = kubernetes_validate.latest_version()
    for doc in documents(name):
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_a_wrong_field_is_caught():
    """The validation above can fail: a misspelt field of the DaemonSet is refused."""
    broken = manifest("DaemonSet")
    broken["spec"]["template"]["spec"]["hostNetworking"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_required_manifest():
    listed = set(documents("kustomization.yaml")[0]["resources"])
    assert listed == set(MANIFESTS) - OPTIONAL


def pod_container(kind: str) -> tuple[dict, dict]:
    pod = manifest(kind)["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def configmap_toml() -> dict:
    return tomllib.loads(manifest("ConfigMap")["data"]["hanode.toml"])


def test_daemonset_runs_on_storage_nodes_with_host_network_and_three_capabilities():
    pod, ctr = pod_container("DaemonSet")
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {"hanode.io/shared-storage": "true"}
    caps = ctr["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert sorted(caps["add"]) == sorted(container.CAPABILITIES)


def test_probes_use_hanode_health_on_the_configured_metrics_port():
    _, ctr = pod_container("DaemonSet")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[ctr[probe]["httpGet"]["port"]] == configmap_toml()["metrics"]["port"]


def test_configmap_config_is_valid_as_the_pod_gets_it(tmp_path):
    pod, ctr = pod_container("DaemonSet")
    env = {e["name"]: e for e in ctr["env"]}
    assert env["HANODE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    password_file = tmp_path / "etcd-password"
    password_file.write_text("s3cret\n")
    merged = container.merge(configmap_toml(), {"HANODE_NODE_NAME": "worker-7",
                                                "HANODE_ETCD_PASSWORD_FILE": str(password_file)})
    cfg = config.parse(tomllib.loads(container.dumps(merged)), "configmap")
    assert cfg.node.name == "worker-7" and cfg.cluster.password == "s3cret"


def test_every_path_the_pod_needs_is_mounted():
    pod, ctr = pod_container("DaemonSet")
    mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(container.CONFIG)]]["configMap"]["name"] == "hanode-config"
    assert str(container.RENDERED.parent) in mounts
    cfg = configmap_toml()
    assert cfg["node"]["state_dir"] in mounts
    secret_dir = str(Path(cfg["cluster"]["ca_file"]).parent)
    secret = volumes[mounts[secret_dir]]["secret"]["secretName"]
    example = next(d for d in documents("secret.example.yaml")
                   if d["metadata"]["name"] == secret)
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    for path in (cfg["cluster"]["ca_file"], cfg["cluster"]["cert_file"],
                 cfg["cluster"]["key_file"], env["HANODE_ETCD_PASSWORD_FILE"]):
        assert Path(path).parent == Path(secret_dir) and Path(path).name in example["stringData"]
    share_root = next(m for m in mounts if m != "/" and all(
        s["path"].startswith(m + "/") for s in cfg["share"]))
    assert volumes[mounts[share_root]]["hostPath"]["path"] == share_root
