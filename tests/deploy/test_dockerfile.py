"""Acceptance 2 (image and ports) and 3 for the Dockerfile: hadolint, one install procedure, the health check."""

from __future__ import annotations

import http.server
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator

import pytest

from tests.deploy.conftest import BIN, K8S, ROOT, kustomize

DOCKERFILE = ROOT / "Dockerfile"
INSTALL = "scripts/install.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def arg_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for kind, a in instructions() if kind == "ARG" and "=" in a)


def runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    stage = ""
    for kind, argument in instructions():
        if kind == "FROM":
            stage = argument.split()[-1]
        if kind == "ENV" and stage == "runtime":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(argument)))
    return env


def test_hadolint_passes_at_the_strictest_threshold() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the one ignore pragma: a stage alias chosen by a build arg, which DL3006 (tag your images) cannot apply to
    pragmas = re.findall(r"# hadolint ignore=(\S+)\n(.*)", DOCKERFILE.read_text())
    assert pragmas == [("DL3006", "FROM registry-${REGISTRY_SOURCE} AS registry")]


def install_commands(text: str, variables: dict[str, str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every call of the install script: (environment it sets, arguments), variables substituted.

    PYTHON only names the interpreter that creates the venv (python3, python3.11): it is not compared.
    """
    calls = []
    for line in text.splitlines():
        if INSTALL not in line or line.lstrip().startswith("#"):
            continue
        command = re.sub(r"^\s*(RUN\s+)?", "", line)
        for name, value in variables.items():
            command = command.replace(f"${{{name}}}", value).replace(f"$({name})", value)
        words = shlex.split(command.split("#")[0])
        if INSTALL not in words or not all("=" in word for word in words[: words.index(INSTALL)]):
            continue  # a mention (a make prerequisite, prose), not a call
        at = words.index(INSTALL)
        env = tuple(sorted(w for w in words[:at] if not w.startswith("PYTHON=")))
        calls.append((env, tuple(words[at + 1 :])))
    return calls


def test_dockerfile_and_make_setup_install_by_the_commands_the_docs_give() -> None:
    dockerfile = install_commands(DOCKERFILE.read_text(), arg_defaults())
    makefile = install_commands((ROOT / "Makefile").read_text(), {"VENV": ".venv"})
    docs = install_commands((ROOT / "docs" / "deploy.md").read_text(), {})
    assert dockerfile == [(("TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu",), ("/opt/venv",))]
    assert makefile == [((), ("--editable", ".venv", "dev"))]
    assert set(dockerfile) | set(makefile) == set(docs)
    # nothing installs around the script
    assert not [a for kind, a in instructions() if kind == "RUN" and re.search(r"\bpip\b|\bapt", a)]
    makefile_text = (ROOT / "Makefile").read_text()
    assert "pip install" not in makefile_text.split("$(VENV)/.installed:")[1].split("\n\n")[0]


def first_party_imports(package: str) -> set[str]:
    """Top-level packages of this repository that ``package``'s modules import."""
    ours = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.MULTILINE))
    return found & ours


def test_the_image_copies_every_package_the_service_and_the_pipeline_import() -> None:
    build_stage_copies = {a.split()[0] for kind, a in instructions() if kind == "COPY" and "--from" not in a}
    needed = first_party_imports("service") | first_party_imports("models")
    assert {"contract", "service", "models"} <= needed
    assert needed <= build_stage_copies


def test_install_script_installs_the_pinned_torch_then_the_project() -> None:
    script = (ROOT / INSTALL).read_text()
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in pins
    assert '--index-url "$TORCH_INDEX_URL" "$torch_pin"' in script
    assert script.index('$torch_pin"\n') < script.index('$editable "$target"')
    result = subprocess.run(["sh", "-n", str(ROOT / INSTALL)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr


def test_image_ports_user_and_paths_agree_with_the_manifests() -> None:
    exposed = {int(p) for kind, a in instructions() if kind == "EXPOSE" for p in a.split()}
    env = runtime_env()
    settings = dict(
        line.split("=", 1) for line in (K8S / "base" / "settings.env").read_text().splitlines() if "=" in line
    )
    assert exposed == {int(env["SLIMSERVE_SERVER__HTTP_PORT"]), int(env["SLIMSERVE_SERVER__GRPC_PORT"])}
    for key in ("SLIMSERVE_SERVER__HTTP_PORT", "SLIMSERVE_SERVER__GRPC_PORT", "SLIMSERVE_REGISTRY__PATH"):
        assert settings[key] == env[key], key
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    uid = int(arg_defaults()["UID"])
    labels = " ".join(a for kind, a in instructions() if kind == "LABEL")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f'org.opencontainers.image.version="{version}"' in labels
    assert 'org.opencontainers.image.title="slimserve"' in labels
    entrypoint = next(a for kind, a in instructions() if kind == "ENTRYPOINT")
    assert entrypoint == '["python", "-m", "service"]'

    for overlay in ("cpu", "gpu-triton"):
        for workload in (m for m in kustomize(K8S / "overlays" / overlay) if m["kind"] == "Deployment"):
            pod = workload["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                image = container["image"]
                if not image.rsplit(":", 1)[0].endswith("/slimserve"):
                    continue
                assert image.rsplit(":", 1)[1] == version, image
                assert (
                    container.get("securityContext", {}).get("runAsUser", pod["securityContext"]["runAsUser"])
                    == uid
                )
                if container["name"] == "slimserve":
                    assert "command" not in container and "args" not in container, (
                        "the image's ENTRYPOINT runs"
                    )
                    assert {p["containerPort"] for p in container["ports"]} == exposed
                    readiness = container["readinessProbe"]["grpc"]["port"]
                    assert readiness == int(env["SLIMSERVE_SERVER__GRPC_PORT"])
                    mounts = [m["mountPath"] for m in container["volumeMounts"]]
                    assert all(
                        not m.startswith(env["SLIMSERVE_REGISTRY__PATH"])
                        or m == env["SLIMSERVE_REGISTRY__PATH"]
                        for m in mounts
                    )


def test_healthcheck_runs_the_shipped_script() -> None:
    healthcheck = next(a for kind, a in instructions() if kind == "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["python", "/opt/slimserve/healthcheck.py"]')
    assert any(
        kind == "COPY" and a == "scripts/healthcheck.py /opt/slimserve/healthcheck.py"
        for kind, a in instructions()
    )


class Ready(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:
        self.send_response(Ready.status if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_service() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_healthcheck_script_reports_readiness(fake_service: int, status: int, exit_code: int) -> None:
    Ready.status = status
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "healthcheck.py")],
        env={"SLIMSERVE_SERVER__HTTP_PORT": str(fake_service)},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == exit_code, result.stderr
