#!/bin/sh
# A virtualenv holding a real Triton Inference Server (2.51, inside the nvidia-pytriton wheel) for the
# integration tests in tests/triton. It is separate from .venv because nvidia-pytriton pins numpy<2.
#
#   scripts/triton-venv.sh [VENV]          (default: .triton-venv)
#   TRITON_VENV_EXTRA="torch==2.13.0" scripts/triton-venv.sh .triton-torch-venv
#                                          (the serving benchmark: TorchScript in the python backend)
#
# Idempotent: a venv already built with the same requirements is only checked, not reinstalled. The
# wheel's tritonserver has only the python backend, and that backend needs the stub built for the venv's
# Python beside libtriton_python.so, so a backend directory is assembled in VENV/triton-backends.
# The stand-in model (models/triton_python_backend/model.py) runs ONNX with ONNX Runtime, which the backend
# stub finds through the venv's python3 first on PATH. On success it prints KEY=VALUE lines for the caller:
#   TRITON_VENV TRITON_PYTHON TRITONSERVER TRITON_BACKEND_DIR TRITON_CACHE_DIR TRITON_LD_LIBRARY_PATH TRITON_PATH
set -eu

venv="${1:-.triton-venv}"
requirements="nvidia-pytriton==0.7.0 numpy<2 onnxruntime>=1.20,<2${TRITON_VENV_EXTRA:+ $TRITON_VENV_EXTRA}"
marker="$venv/.slimserve-triton-ready"

mkdir -p "$venv"
venv="$(cd "$venv" && pwd)"
marker="$venv/.slimserve-triton-ready"

# one builder at a time (parallel test sessions); the others wait, then find it ready
exec 9>"$venv/.lock"
flock 9

if [ "$(cat "$marker" 2>/dev/null || true)" != "$requirements" ]; then
    rm -f "$marker"
    started="$(date +%s)"
    python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    test -x "$venv/bin/python" || "$python" -m venv "$venv" || {
        echo "triton-venv: cannot create a virtualenv in $venv with $python" >&2
        exit 1
    }
    # shellcheck disable=SC2086  # a list of requirement specifiers without spaces
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $requirements 2>"$venv/pip.log" || {
        cat "$venv/pip.log" >&2
        echo "triton-venv: pip install failed ($requirements)" >&2
        exit 1
    }
    echo "triton-venv: installed $requirements into $venv in $(($(date +%s) - started)) s" >&2
fi

eval "$("$venv/bin/python" - <<'EOF'
import pathlib, shlex, sys, sysconfig
import pytriton
root = pathlib.Path(pytriton.__file__).parent
values = {
    "site": sysconfig.get_paths()["purelib"],
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "dist": str(root / "tritonserver"),
    "pyver": f"{sys.version_info[0]}.{sys.version_info[1]}",
}
for key, value in values.items():
    print(f"{key}={shlex.quote(value)}")
EOF
)"
# shellcheck disable=SC2154  # site, libdir, dist and pyver come from the eval above
{
    backends="$venv/triton-backends"
    if [ ! -x "$backends/python/triton_python_backend_stub" ]; then
        rm -rf "$backends.tmp"
        mkdir -p "$backends.tmp/python"
        cp "$dist/backends/python/libtriton_python.so" "$dist/backends/python/triton_python_backend_utils.py" \
            "$backends.tmp/python/"
        cp "$dist/python_backend_stubs/$pyver/triton_python_backend_stub" "$backends.tmp/python/"
        rm -rf "$backends"
        mv "$backends.tmp" "$backends"
    fi
    test -x "$dist/bin/tritonserver" || { echo "triton-venv: no tritonserver in $dist" >&2; exit 1; }
    echo "$requirements" >"$marker"
    echo "TRITON_VENV=$venv"
    echo "TRITON_PYTHON=$venv/bin/python"
    echo "TRITONSERVER=$dist/bin/tritonserver"
    echo "TRITON_BACKEND_DIR=$backends"
    echo "TRITON_CACHE_DIR=$dist/caches"
    echo "TRITON_LD_LIBRARY_PATH=$libdir:$site/nvidia_pytriton.libs"
    echo "TRITON_PATH=$venv/bin"
}
