"""compose.yaml and docker/*.Dockerfile name entry points, flags, ports and files that exist.

No Docker engine runs here: the files are parsed and checked against the
real console scripts, the real argparse parsers and the lock file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from launcher_util import REPO

COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = {  # compose service -> (console script, package module, distribution)
    "server": ("infer-server", "infer_server", "infer-server"),
    "scheduler": ("infer-scheduler", "infer_scheduler", "infer-scheduler"),
}


def dockerfile(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the service's Dockerfile, continuations joined."""
    build = COMPOSE["services"][service]["build"]
    assert build["context"] == "."
    text = (REPO / build["dockerfile"]).read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(service: str) -> list[tuple[str, str]]:
    steps = dockerfile(service)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def instruction(service: str, word: str) -> str:
    found = [rest for w, rest in final_stage(service) if w == word]
    assert found, f"{service}: no {word}"
    return found[-1]


def exec_form(service: str, word: str) -> list[str]:
    value = json.loads(instruction(service, word))
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def expand(value: str) -> str:
    """Compose variable substitution with defaults: ${X:-default} -> default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def parser_of(module: str):
    """The real argparse parser of a process (its build_parser, env-free)."""
    for name in (f"{module}.cli", f"{module}.config"):
        mod = importlib.import_module(name)
        build = getattr(mod, "build_parser", None)
        if build is not None:
            params = inspect.signature(build).parameters
            return build({}) if params else build()
    raise AssertionError(f"{module} has no build_parser")


def flag_value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("service", SERVICES)
def test_entry_point_is_the_real_console_script(service):
    script, module, dist = SERVICES[service]
    assert exec_form(service, "ENTRYPOINT") == [script]
    scripts = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts[script].value.split(":")[0].startswith(module)
    assert scripts[script].dist is not None and scripts[script].dist.name == dist


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_cmd_and_compose_command_parse_with_the_real_parser(service):
    _, module, _ = SERVICES[service]
    parser = parser_of(module)
    for argv in (
        exec_form(service, "CMD"),
        [expand(a) for a in COMPOSE["services"][service]["command"]],
    ):
        assert all(isinstance(a, str) for a in argv)
        args, unknown = parser.parse_known_args(argv)
        assert unknown == [], f"{service}: flags the process does not know: {unknown}"
        assert args is not None


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_only_its_package_and_copies_existing_files(service):
    _, _, dist = SERVICES[service]
    runs = " ".join(rest for word, rest in dockerfile(service) if word == "RUN")
    assert f"--package {dist}" in runs and "--frozen" in runs
    for word, rest in dockerfile(service):
        if word == "COPY" and "--from=" not in rest:
            for source in shlex.split(rest)[:-1]:
                assert (REPO / source).exists(), f"{service}: COPY {source} does not exist"


def test_server_image_has_no_torch_and_scheduler_image_has_cuda_torch():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}

    def closure(name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in packages:
                continue
            seen.add(current)
            todo += [d["name"] for d in packages[current].get("dependencies", [])]
        return seen

    assert "torch" not in closure("infer-server")
    scheduler = closure("infer-scheduler")
    assert "torch" in scheduler
    assert any(name.startswith("nvidia-") for name in scheduler), "torch without CUDA libraries"


def test_ports_agree_between_dockerfiles_commands_and_compose():
    server = COMPOSE["services"]["server"]
    scheduler = COMPOSE["services"]["scheduler"]
    server_port = int(flag_value(server["command"], "--port"))
    assert instruction("server", "EXPOSE") == str(server_port)
    assert flag_value(exec_form("server", "CMD"), "--port") == str(server_port)
    assert [p.split(":")[-1] for p in server["ports"]] == [str(server_port)]

    bound = urlparse(flag_value(scheduler["command"], "--endpoint"))
    assert bound.scheme == "tcp"
    assert instruction("scheduler", "EXPOSE") == str(bound.port)
    assert urlparse(flag_value(exec_form("scheduler", "CMD"), "--endpoint")).port == bound.port
    assert [str(p) for p in scheduler["expose"]] == [str(bound.port)]
    assert "ports" not in scheduler, "the engine port must not be published"

    connected = urlparse(flag_value(server["command"], "--engine-endpoint"))
    assert connected.scheme == "tcp"
    assert connected.hostname == "scheduler" and connected.port == bound.port


def test_gpu_is_reserved_for_the_scheduler_only():
    devices = COMPOSE["services"]["scheduler"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    assert "deploy" not in COMPOSE["services"]["server"]


def test_health_checks_probe_ready_and_ping_with_scripts_in_the_images():
    for service, script in (("server", "ready_check.py"), ("scheduler", "ping_engine.py")):
        test = COMPOSE["services"][service]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python"
        assert test[2] == f"/app/{script}"
        assert (REPO / "docker" / script).is_file()
        copies = [rest.split() for word, rest in final_stage(service) if word == "COPY"]
        assert [f"docker/{script}", f"/app/{script}"] in copies
        assert script in instruction(service, "HEALTHCHECK")
    server = COMPOSE["services"]["server"]
    url = urlparse(server["healthcheck"]["test"][3])
    assert url.path == "/ready" and url.port == int(flag_value(server["command"], "--port"))
    scheduler = COMPOSE["services"]["scheduler"]
    probe = urlparse(scheduler["healthcheck"]["test"][3])
    assert probe.port == urlparse(flag_value(scheduler["command"], "--endpoint")).port
    assert server["depends_on"]["scheduler"]["condition"] == "service_started"


def test_models_volume_is_mounted_into_the_scheduler():
    mounts = COMPOSE["services"]["scheduler"]["volumes"]
    named = {m.split(":")[0]: m.split(":")[1] for m in mounts}
    assert named.get("models") == "/models"
    assert "models" in COMPOSE["volumes"]
    assert json.loads(instruction("scheduler", "VOLUME")) == ["/models"]


@pytest.mark.parametrize("service", SERVICES)
def test_environment_variables_are_read_by_the_process(service):
    _, module, _ = SERVICES[service]
    source = "\n".join(
        p.read_text()
        for p in (REPO / "packages" / module.replace("_", "-") / "src" / module).rglob("*.py")
    )
    # the endpoint variables are read through the shared defaults of infer_protocol
    source += (REPO / "packages/infer-protocol/src/infer_protocol/defaults.py").read_text()
    names = set(COMPOSE["services"][service].get("environment", {}))
    for word, rest in final_stage(service):
        if word == "ENV":
            names |= set(re.findall(r"([A-Z_][A-Z0-9_]*)=", rest))
    runtime = {
        "PATH",
        "PYTHONUNBUFFERED",
        "NVIDIA_VISIBLE_DEVICES",
        "NVIDIA_DRIVER_CAPABILITIES",
        "OMP_WAIT_POLICY",
        "GOMP_SPINCOUNT",
    }
    for name in sorted(names - runtime):
        assert f'"{name}"' in source, f"{service}: {name} is not read by {module}"


def _dockerfile_env(service: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage(service):
        if word == "ENV":
            env.update(dict(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", rest)))
    env.pop("PATH", None)
    return env


def _rewrite(argv: list[str], replacements: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for old, new in replacements.items():
            arg = arg.replace(old, new)
        out.append(arg)
    return out


def test_compose_services_run_and_pass_their_health_checks_over_tcp(tmp_path):
    """Each service's entry point + command, as compose runs them, on this host over tcp.

    Only addresses change: the service name `scheduler` becomes 127.0.0.1 and
    the ports become free ones.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from launcher_util import free_port, script

    engine_port, http_port = free_port(), free_port()
    server, scheduler = COMPOSE["services"]["server"], COMPOSE["services"]["scheduler"]
    bound = urlparse(flag_value(scheduler["command"], "--endpoint"))
    published = int(flag_value(server["command"], "--port"))
    swap = {
        f"tcp://0.0.0.0:{bound.port}": f"tcp://127.0.0.1:{engine_port}",
        f"tcp://scheduler:{bound.port}": f"tcp://127.0.0.1:{engine_port}",
        f"tcp://127.0.0.1:{bound.port}": f"tcp://127.0.0.1:{engine_port}",
        f"http://127.0.0.1:{published}/": f"http://127.0.0.1:{http_port}/",
    }
    runs = {}
    for name, spec in (("scheduler", scheduler), ("server", server)):
        argv = [script(exec_form(name, "ENTRYPOINT")[0]), *(expand(a) for a in spec["command"])]
        argv = _rewrite(argv, swap)
        if name == "server":
            argv = _rewrite(argv, {"0.0.0.0": "127.0.0.1", str(published): str(http_port)})
        env = {**os.environ, **_dockerfile_env(name)}
        env.update({k: expand(str(v)) for k, v in spec.get("environment", {}).items()})
        log = (tmp_path / f"{name}.log").open("wb")
        runs[name] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    checks = {
        name: [sys.executable, str(REPO / "docker" / Path(spec["healthcheck"]["test"][2]).name)]
        + _rewrite(spec["healthcheck"]["test"][3:], swap)
        for name, spec in (("scheduler", scheduler), ("server", server))
    }
    try:
        deadline = time.monotonic() + 120
        healthy: set[str] = set()
        while time.monotonic() < deadline and len(healthy) < 2:
            for name, check in checks.items():
                assert runs[name].poll() is None, (tmp_path / f"{name}.log").read_text()[-2000:]
                if (
                    name not in healthy
                    and subprocess.run(check, capture_output=True).returncode == 0
                ):
                    healthy.add(name)
            time.sleep(0.5)
        assert healthy == {"scheduler", "server"}
        reply = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/chat/completions",
            json={
                "model": "smollm2",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
    finally:
        for proc in runs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in runs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
