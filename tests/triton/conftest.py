"""``triton_server`` (session scope): a real Triton Inference Server serving the tiny registry's fp32 variants.

The launcher is ``models.triton_local`` (shared with the serving benchmark). A venv that cannot be made fails
the tests; it never skips them. The fixture yields a ``TritonServer``: ``.http_url`` / ``.grpc_url``
(``127.0.0.1:PORT``, as tritonclient takes them), ``.repository``, ``.pid``, ``.models`` (exported names),
``.kill()`` (SIGKILL, for fault tests) and ``.restart()`` (start again on the same ports, wait ready).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.export_triton import export_triton
from models.triton_local import TritonInstall, TritonServer, TritonUnavailable, free_port
from models.triton_local import triton_install as install_or_raise

__all__ = ["TritonServer", "triton_install"]


def triton_install(venv: Path | None = None, python: str | None = None) -> TritonInstall:
    """The Triton install, or a failed test (never a skip) saying why it could not be made."""
    try:
        return install_or_raise(venv, python) if venv is not None else install_or_raise(python=python)
    except TritonUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def triton_server(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    install = triton_install()
    root = tmp_path_factory.mktemp("triton")
    repository = root / "repository"
    models = export_triton(tiny_registry, repository, None, gpu=False, python_backend=True)
    http_port = free_port()
    grpc_port = free_port()
    while grpc_port == http_port:
        grpc_port = free_port()
    server = TritonServer(
        install=install,
        repository=repository,
        models=models,
        http_port=http_port,
        grpc_port=grpc_port,
        log_path=root / "tritonserver.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
