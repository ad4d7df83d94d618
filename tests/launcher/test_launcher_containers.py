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
ENGINES = tuple(name for name in COMPOSE["services"] if name != "server")
SERVICES = {  # compose service -> (console script, package module, distribution)
    "server": ("infer-server", "infer_server", "infer-server"),
    **{name: ("infer-scheduler", "infer_scheduler", "infer-scheduler") for name in ENGINES},
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


def expand(value: str, env: dict[str, str] | None = None) -> str:
    """Compose variable substitution with defaults: ${X:-default} -> env's X, else default."""
    given = env or {}
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: given.get(m[1]) or m[2], value)


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
    server_port = int(flag_value(server["command"], "--port"))
    assert instruction("server", "EXPOSE") == str(server_port)
    assert flag_value(exec_form("server", "CMD"), "--port") == str(server_port)
    assert [p.split(":")[-1] for p in server["ports"]] == [str(server_port)]

    connected = [
        urlparse(server["command"][i + 1])
        for i, arg in enumerate(server["command"])
        if arg == "--engine-endpoint"
    ]
    assert [url.hostname for url in connected] == list(ENGINES), "one endpoint per engine"
    assert len(ENGINES) >= 2
    for name, url in zip(ENGINES, connected, strict=True):
        engine = COMPOSE["services"][name]
        bound = urlparse(flag_value(engine["command"], "--endpoint"))
        assert bound.scheme == url.scheme == "tcp"
        assert instruction(name, "EXPOSE") == str(bound.port) == str(url.port)
        assert urlparse(flag_value(exec_form(name, "CMD"), "--endpoint")).port == bound.port
        assert [str(p) for p in engine["expose"]] == [str(bound.port)]
        assert "ports" not in engine, "the engine port must not be published"


def test_each_engine_reserves_a_gpu_of_its_own():
    ids = []
    for name in ENGINES:
        devices = COMPOSE["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert [d["capabilities"] for d in devices] == [["gpu"]]
        ids += [i for d in devices for i in d["device_ids"]]
    assert len(ids) == len(set(ids)) == len(ENGINES), ids
    assert "deploy" not in COMPOSE["services"]["server"]


def test_health_checks_probe_ready_and_ping_with_scripts_in_the_images():
    probes = [("server", "ready_check.py"), *((name, "ping_engine.py") for name in ENGINES)]
    for service, script in probes:
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
    for name in ENGINES:
        engine = COMPOSE["services"][name]
        probe = urlparse(engine["healthcheck"]["test"][3])
        assert probe.port == urlparse(flag_value(engine["command"], "--endpoint")).port
        assert server["depends_on"][name]["condition"] == "service_started"


@pytest.mark.parametrize("name", ENGINES)
def test_models_volume_is_mounted_into_the_engines(name):
    mounts = COMPOSE["services"][name]["volumes"]
    named = {m.split(":")[0]: m.split(":")[1] for m in mounts}
    assert named.get("models") == "/models"
    assert "models" in COMPOSE["volumes"]
    assert json.loads(instruction(name, "VOLUME")) == ["/models"]


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

    Only addresses change: the service names `engine-N` become 127.0.0.1 and
    the ports become free ones (one per engine). The gateway serves through
    both engines. INFER_MODEL names a tiny model, as a user names theirs.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from launcher_util import free_port, script

    from infer_worker.testing import write_tiny_llama

    shell = {"INFER_MODEL": str(write_tiny_llama(tmp_path / "tiny"))}
    http_port = free_port()
    server = COMPOSE["services"]["server"]
    published = int(flag_value(server["command"], "--port"))
    swaps: dict[str, dict[str, str]] = {
        "server": {f"http://127.0.0.1:{published}/": f"http://127.0.0.1:{http_port}/"}
    }
    for name in ENGINES:
        bound = urlparse(flag_value(COMPOSE["services"][name]["command"], "--endpoint"))
        here = f"tcp://127.0.0.1:{free_port()}"
        swaps[name] = {f"tcp://0.0.0.0:{bound.port}": here, f"tcp://127.0.0.1:{bound.port}": here}
        swaps["server"][f"tcp://{name}:{bound.port}"] = here
    runs = {}
    for name in (*ENGINES, "server"):
        spec = COMPOSE["services"][name]
        argv = [
            script(exec_form(name, "ENTRYPOINT")[0]),
            *(expand(a, shell) for a in spec["command"]),
        ]
        argv = _rewrite(argv, swaps[name])
        if name == "server":
            argv = [str(http_port) if a == str(published) else a for a in argv]
            argv = _rewrite(argv, {"0.0.0.0": "127.0.0.1"})
        env = {**os.environ, **_dockerfile_env(name)}
        env.update({k: expand(str(v), shell) for k, v in spec.get("environment", {}).items()})
        log = (tmp_path / f"{name}.log").open("wb")
        runs[name] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    checks = {
        name: [sys.executable, str(REPO / "docker" / Path(spec["healthcheck"]["test"][2]).name)]
        + _rewrite(spec["healthcheck"]["test"][3:], swaps[name])
        for name, spec in COMPOSE["services"].items()
    }
    try:
        deadline = time.monotonic() + 120
        healthy: set[str] = set()
        while time.monotonic() < deadline and len(healthy) < len(checks):
            for name, check in checks.items():
                assert runs[name].poll() is None, (tmp_path / f"{name}.log").read_text()[-2000:]
                if (
                    name not in healthy
                    and subprocess.run(check, capture_output=True).returncode == 0
                ):
                    healthy.add(name)
            time.sleep(0.5)
        assert healthy == set(COMPOSE["services"])
        models = httpx.get(f"http://127.0.0.1:{http_port}/v1/models", timeout=10).json()
        reply = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/chat/completions",
            json={
                "model": models["data"][0]["id"],
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        engines = httpx.get(f"http://127.0.0.1:{http_port}/v1/metrics", timeout=10).json()
        assert [e["state"] for e in engines["engines"]] == ["ready"] * len(ENGINES)
    finally:
        for proc in runs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in runs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
