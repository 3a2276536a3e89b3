# syntax=docker/dockerfile:1
# slimserve: a CPU-only image serving a model family's compressed variants over OIP (HTTP 8000, gRPC 8001).
#
#   docker build -t slimserve:0.1.0 .                                   # registry mounted at run time
#   docker build --build-arg REGISTRY_SOURCE=baked -t slimserve:0.1.0 . # registry built into the image
#
# REGISTRY_SOURCE=mounted (default): the image holds the code only; mount a registry (a Triton model
#   repository built by `python -m models build`) at /models/registry (a volume, a PVC, an initContainer).
# REGISTRY_SOURCE=baked: a builder stage runs the pipeline (`python -m models build $FAMILY`, a few minutes)
#   and the image carries its registry at /models/registry: the image tag then names code and models both.
# TORCH_INDEX_URL: where torch comes from. The default is the PyTorch CPU wheel index; a plain PyPI torch for
#   linux x86_64 is a multi-GB CUDA build that this image never uses.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG REGISTRY_SOURCE=mounted

# --- build: the venv, by the same script `make setup` runs ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY contract contract
COPY service service
COPY models models
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" PYTHON=python3 scripts/install.sh /opt/venv

# --- the registry: built here (baked) or left empty for a mount (mounted) ------------------------------------
FROM build AS registry-baked
ARG FAMILY=mnist
RUN /opt/venv/bin/python -m models build "${FAMILY}" --registry /models/registry

FROM ${PYTHON_IMAGE} AS registry-mounted
RUN mkdir -p /models/registry

# The stage named by the build arg; DL3006 (tag the image) cannot apply to a stage alias.
# hadolint ignore=DL3006
FROM registry-${REGISTRY_SOURCE} AS registry

# --- runtime: the venv, the registry (or its mount point), a non-root user ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
LABEL org.opencontainers.image.title="slimserve" \
      org.opencontainers.image.description="OIP (KServe v2) inference for compressed model variants" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --system --gid "${UID}" slimserve \
    && useradd --system --uid "${UID}" --gid slimserve --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin slimserve
COPY --from=build /opt/venv /opt/venv
COPY --from=registry /models /models
COPY scripts/healthcheck.py /opt/slimserve/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLIMSERVE_SERVER__HOST=0.0.0.0 \
    SLIMSERVE_SERVER__HTTP_PORT=8000 \
    SLIMSERVE_SERVER__GRPC_PORT=8001 \
    SLIMSERVE_REGISTRY__PATH=/models/registry
WORKDIR /opt/slimserve
USER ${UID}:${UID}
# 8000: HTTP (OIP REST, /metrics); 8001: gRPC (OIP, grpc.health.v1)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/slimserve/healthcheck.py"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
