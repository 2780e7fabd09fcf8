"""The environment a gate's command runs with (loomtui.guardrails.gates)."""

from __future__ import annotations

from loomtui.config import GateConfig
from loomtui.guardrails.baseline import gate_environment


def test_a_gate_gets_its_own_env_and_none_of_an_enclosing_pytest_runs() -> None:
    source = {"PATH": "/bin", "PYTEST_XDIST_WORKER": "gw0", "PYTEST_CURRENT_TEST": "t"}
    gate = GateConfig("tests", ("python", "-m", "pytest"), env=(("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1"),
                                                                ("PATH", "/opt/bin")))
    env = gate_environment(source, gate)
    assert env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1" and env["PATH"] == "/opt/bin"
    assert "PYTEST_XDIST_WORKER" not in env and "PYTEST_CURRENT_TEST" not in env
    assert env["GIT_CONFIG_COUNT"] == str(sum(1 for k in env if k.startswith("GIT_CONFIG_KEY_")))
    plain = gate_environment(source, GateConfig("compile", ("python", "-m", "compileall")))
    assert plain["PATH"] == "/bin" and not any(k.startswith("PYTEST_") for k in plain)
