"""cluster.yaml: valid for Ray's own autoscaler schema, and secure by default."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
PRIVATE_PORTS = (8265, 10001, 6379)  # dashboard + Jobs API, Ray client, GCS
WORLD = ("0.0.0.0/0", "::/0")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _start_commands(config: dict) -> list[str]:
    return config["head_start_ray_commands"] + config["worker_start_ray_commands"]


def world_open_private_ports(ip_permissions: list[dict]) -> list[tuple[int, dict]]:
    """(port, rule) for every rule that opens one of PRIVATE_PORTS to the whole internet."""
    found = []
    for rule in ip_permissions:
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        if not any(c in WORLD for c in cidrs):
            continue
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        for port in PRIVATE_PORTS:
            if rule.get("IpProtocol") == "-1" or lo == -1 or lo <= port <= hi:
                found.append((port, rule))
    return found


def test_validates_against_rays_autoscaler_schema(config):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(config, schema)  # the file as written
    # What `ray up` does: merge the AWS defaults, then Ray's own validate_config.
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_start_ray_commands"] == config["head_start_ray_commands"]


def test_the_validator_rejects_a_broken_config(config):
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5  # must be integer
    with pytest.raises(Exception, match="(?i)valid|0.5"):
        validate_config(prepare_config(broken))
    broken = copy.deepcopy(config)
    broken["head_start_ray_command"] = []  # a typo'd key
    with pytest.raises(Exception, match="head_start_ray_command"):
        validate_config(prepare_config(broken))


def test_cpu_head_and_gpu_workers_that_scale_from_zero(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU", 0) == 0
    gpu_types = {n: t for n, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no GPU worker node type"
    for t in gpu_types.values():
        assert t["min_workers"] == 0
        assert 1 <= t["max_workers"] <= config["max_workers"]
        assert re.match(r"^(g4dn|g5|g6|g6e|p3|p4d|p4de|p5)\.", t["node_config"]["InstanceType"])
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["cache_stopped_nodes"] is False


def test_token_auth_on_every_node_and_token_only_in_file_mounts(config):
    for command in _start_commands(config):
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command, command
    mounts = config["file_mounts"]
    token_mounts = {r: l for r, l in mounts.items() if r.endswith("/.ray/auth_token")}
    assert token_mounts == {"/home/ubuntu/.ray/auth_token": "~/.ray/auth_token"}
    text = CLUSTER_YAML.read_text()
    assert "RAY_AUTH_TOKEN=" not in text and "RAY_AUTH_TOKEN_PATH" not in text
    # Ray tokens are 32 hex digits (uuid4().hex); none may be pasted in the file.
    assert not re.search(r"\b[0-9a-f]{32}\b", text)


def test_dashboard_binds_localhost_and_no_private_port_is_open_to_the_internet(config):
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in CLUSTER_YAML.read_text()
    extra = config["provider"]["security_group"]["IpPermissions"]
    assert world_open_private_ports(extra) == []
    # The rules Ray itself will create for the group: intra-cluster + SSH + ours.
    aws = pytest.importorskip("ray.autoscaler._private.aws.config",
                              reason="Ray's AWS launcher needs boto3 (pip install boto3)")
    rules = aws._create_default_inbound_rules(["sg-0123456789abcdef0"], extra)
    assert world_open_private_ports(rules) == []
    assert any(r.get("FromPort") == 22 for r in rules)


def test_the_checker_flags_an_open_dashboard():
    rule = {"FromPort": 8000, "ToPort": 9000, "IpProtocol": "tcp",
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    assert [p for p, _ in world_open_private_ports([rule])] == [8265]
    everything = {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    assert [p for p, _ in world_open_private_ports([everything])] == list(PRIVATE_PORTS)


def test_setup_installs_the_project_like_the_readme_and_mounts_data(config):
    setup = " && ".join(config["setup_commands"])
    assert "-m venv .venv" in setup and ".venv/bin/pip install -q -e ." in setup
    assert "python -m venv .venv" in (REPO / "README.md").read_text().replace("python3", "python")
    mounts = config["file_mounts"]
    assert mounts["/home/ubuntu/hpcm-tune"] == "."
    assert any("checkpoints" in r for r in mounts)
    assert any(r.endswith("/train") for r in mounts) and any(r.endswith("/val") for r in mounts)
    assert ".venv" in config["rsync_exclude"]
    assert config["metadata"]["storage_path"].startswith("s3://")
    for command in _start_commands(config):
        if "ray start" in command:
            assert "~/hpcm-tune/.venv/bin/ray start" in command
