# uminfer-exporter container image.
#   docker build -t uminfer-exporter .
#   docker run --rm -p 9866:9866 uminfer-exporter --demo
# Stage 1 builds wheels (the exporter and its dependencies); stage 2 installs only those wheels
# into a clean slim Python, so no build tool, compiler or pip cache reaches the final image.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="uminfer-exporter" \
      org.opencontainers.image.description="Prometheus exporter for LLM token usage (GetUMInferTokenUsage)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm"
# No .pyc writes at run time (the root filesystem may be read-only), unbuffered logs. Two
# malloc arenas, not one per thread: with glibc's default, up to 16 arenas each keep the high
# water of large API answers (45 MiB more peak RSS under hostile answers, see test_hostile_e2e).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
# --no-index: exactly the wheels built above are installed (pinned by construction).
# The state and config directories belong to the numeric non-root user the image runs as.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/uminfer-exporter \
 && install -d -m 0755 /etc/uminfer-exporter
USER 65532:65532
WORKDIR /var/lib/uminfer-exporter
VOLUME ["/var/lib/uminfer-exporter"]
EXPOSE 9866
# The exporter's own probe (the slim base has no curl): /-/healthy over loopback, which needs no
# password; it falls back to TLS when the port speaks TLS, so it works with --web.config.file.
# Moved the port? Run with --health-cmd "python -m exporter.probe --web.listen-address=:PORT".
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-m", "exporter.probe"]
ENTRYPOINT ["uminfer-exporter"]
CMD ["--config.file=/etc/uminfer-exporter/config.yaml", "--state.path=/var/lib/uminfer-exporter/state.json"]
