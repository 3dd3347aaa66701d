"""The [health] table: defaults, and one line naming file, key and problem for each mistake."""

from __future__ import annotations

import pytest

from hanode.config import DEFAULT_PROBES, ConfigError, HealthConfig, parse


def health(raw: dict, tmp_path=None):
    return parse({"node": {"name": "n1"}, "health": raw}, "/etc/hanode/hanode.toml").health


def test_defaults():
    cfg = parse({"node": {"name": "n1"}})
    assert cfg.health == HealthConfig()
    assert cfg.health.worker == DEFAULT_PROBES["worker"] and cfg.health.checks == ()


def test_keys_are_read(tmp_path):
    script = tmp_path / "ok.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    h = health({"rise": 2, "hold_down": 3, "worker": {"interval": 0.5, "timeout": 0.25},
                "check": [{"name": "nfs", "command": [str(script), "-q"], "interval": 3,
                           "timeout": 2, "fall": 4}]})
    assert h.rise == 2 and h.hold_down == 3.0
    assert (h.worker.interval, h.worker.timeout, h.worker.fall) == (0.5, 0.25, 2)
    (check,) = h.checks
    assert check.command == (str(script), "-q") and check.fall == 4


@pytest.mark.parametrize("raw, message", [
    ({"worker": {"interval": 1, "timeout": 2}},
     "health.worker.timeout: 2 s is longer than health.worker.interval (1 s)"),
    ({"bogus": 1}, "health.bogus: unknown key"),
    ({"storage": {"intervall": 1}}, "health.storage.intervall: unknown key"),
    ({"check": [{"name": "x", "command": ["/no/such/tool"]}]},
     "health.check[0].command: '/no/such/tool' not found"),
    ({"check": [{"name": "x", "command": []}]},
     "health.check[0].command: must be a non-empty list of strings, not a list"),
    ({"check": [{"name": "x", "command": ["true"], "interval": 1, "timeout": 3}]},
     "health.check[0].timeout: 3 s is longer than health.check[0].interval (1 s)"),
    ({"check": [{"command": ["true"]}]}, "health.check[0].name: is required"),
    ({"check": [{"name": "x", "command": ["true"], "every": 1}]},
     "health.check[0].every: unknown key"),
    ({"rise": 0}, "health.rise: 0 is out of range (1 to 100)"),
])
def test_mistakes_are_one_line(raw, message):
    with pytest.raises(ConfigError) as err:
        health(raw)
    assert str(err.value) == f"/etc/hanode/hanode.toml: {message}"


def test_command_that_is_not_executable(tmp_path):
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        health({"check": [{"name": "x", "command": [str(script)]}]})
    assert str(err.value) == (f"/etc/hanode/hanode.toml: health.check[0].command: "
                              f"{str(script)!r} is not executable")
