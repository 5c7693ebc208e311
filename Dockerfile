# syntax=docker/dockerfile:1
# streamdrift service image: docker build -t streamdrift . ; see docker-compose.yml for the stack.

# -- build: wheels of streamdrift and every dependency ---------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamdrift ./streamdrift
# With the confluent extra, so that kafka.library: confluent-kafka works in the image.
RUN pip wheel --wheel-dir /wheels ".[confluent]"

# -- runtime: only the installed wheels, a non-root user -------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "streamdrift[confluent]" \
    && groupadd --system --gid 10001 streamdrift \
    && useradd --system --uid 10001 --gid streamdrift --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin streamdrift
# The compose deployment's config as the default; mount your own over it.
COPY deploy/streamdrift.yaml /etc/streamdrift/streamdrift.yaml
USER 10001:10001
EXPOSE 9108
# /healthz: 200 while the processing loop is alive, 503 otherwise (urlopen raises on both 503
# and a refused connection). Override the URL when metrics.port differs.
ENV HEALTHCHECK_URL=http://127.0.0.1:9108/healthz
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)" || exit 1
ENTRYPOINT ["streamdrift"]
CMD ["run", "--config", "/etc/streamdrift/streamdrift.yaml"]
