# Census data platform: one image for every role, chosen by the command:
#   python -m warehouse.schema --db postgres           create the schema
#   python -m loaders.upload data/Input_Dataset.csv --db postgres
#   python -m api                                       the HTTP API (default)
#   python -m explorer --address 0.0.0.0 ...          the explorer (explorer/serve.py builds its panel serve command)
# Builds with the classic builder too (DOCKER_BUILDKIT=0): no BuildKit-only syntax.
# BASE_IMAGE lets a machine without Docker Hub build from a local base image.
ARG BASE_IMAGE=python:3.11-slim

# ---- builder: dependencies into a virtualenv, the project into a wheel -------
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (runtime ones only, never the [dev] extra), so that a code
# change does not reinstall them: this layer is reused while pyproject.toml is unchanged.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project'].get('dependencies', []); open('/tmp/requirements.txt', 'w').write(chr(10).join(deps) + chr(10))" \
 && pip install --no-cache-dir -r /tmp/requirements.txt
# The project itself as a wheel, installed in the runtime stage: a code change
# then leaves the (large) dependency venv layer untouched.
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime: slim, no compilers or test tools, non-root ---------------------
FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Chromium and its driver for the explorer's PNG/JPG export (selenium).
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 census \
 && useradd --system --uid 10001 --gid census --create-home --home-dir /home/census --shell /usr/sbin/nologin census
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/pip check \
 && rm -rf /tmp/wheels
WORKDIR /app
COPY . /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/census \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    EXPLORER_PORT=5006
USER 10001:10001
EXPOSE 8000 5006
# Probes the API's health by default; compose gives the explorer its own URL and
# turns it off for the one-shot loader.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]
CMD ["python", "-m", "api"]
# Last, so that a new commit rebuilds only this layer.
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.revision=${GIT_COMMIT} \
      org.opencontainers.image.title="census-platform"
