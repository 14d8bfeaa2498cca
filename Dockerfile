# syntax=docker/dockerfile:1
# Veritas in a container: the wheel `make dist` builds, installed into a virtual
# environment of its own. No engine runs on the project's machines: `make lint-deploy`
# checks this file with hadolint, and tests/unit/test_deploy_files.py holds its
# settings, commands and ports to the code's (README, "Containers and Kubernetes").
#
#   docker build -t veritas .
#   docker run -e VERITAS_DATABASE_URL=... -e VERITAS_JWT_SECRET=... -p 50051:50051 veritas
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The wheel and every dependency as wheels, built where build tools may live.
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# Only the interpreter, the virtual environment and a user without privileges.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="veritas" \
      org.opencontainers.image.description="gRPC backend for online-exam integrity monitoring" \
      org.opencontainers.image.licenses="Apache-2.0"
# The wheels are mounted for this one step, so none of them stays in a layer. The
# builder made the one veritas-grpc wheel there is: its version is pyproject.toml's,
# not repeated here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/veritas \
    && /opt/veritas/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        veritas-grpc \
    && useradd --system --uid 10001 --home-dir /var/lib/veritas --create-home veritas
ENV PATH=/opt/veritas/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VERITAS_LISTEN=0.0.0.0:50051 \
    VERITAS_DATA_DIR=/var/lib/veritas
USER 10001:10001
WORKDIR /var/lib/veritas
EXPOSE 50051
# Probes the port VERITAS_LISTEN names, over TLS when VERITAS_TLS_CERT_FILE is set. A
# probe is a Python start-up (~1.5 s of CPU): every 30 s, not more often.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["veritas", "healthcheck"]
# SIGTERM starts the graceful stop (VERITAS_SHUTDOWN_GRACE_SECONDS); exec form, so the
# server is PID 1 and gets it.
STOPSIGNAL SIGTERM
CMD ["veritas", "serve"]
