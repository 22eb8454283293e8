# syntax=docker/dockerfile:1
# One image for every component: `crucible aggregator`, `crucible participant`,
# `crucible operator`, and the demo with the creep data shipped in the image:
#   docker run --rm IMAGE demo --data /opt/crucible/share/data/creep --output /tmp/demo
#
# Build arguments:
#   TORCH_INDEX_URL  where torch comes from. Default: PyTorch's CPU-only index, which
#                    keeps the image near 1 GB instead of several with CUDA. For CUDA
#                    wheels use e.g. https://download.pytorch.org/whl/cu126.
#   TORCH_VERSION    the torch release to install from that index.
#
#   docker build -t REGISTRY/crucible:0.1.0 .
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
#     -t REGISTRY/crucible:0.1.0-cu126 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.15.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/crucible
ENV PATH=/opt/crucible/bin:$PATH
# torch first, from its own index, so that installing Crucible finds it satisfied and
# does not pull the CUDA build from PyPI.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crucible ./crucible
COPY services ./services
COPY operators ./operators
RUN pip install --no-cache-dir . \
    && python -m compileall -q /opt/crucible/lib

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric user, so that Kubernetes' runAsNonRoot can check it; the chart runs
# the pods as this user with a read-only root filesystem and a writable /tmp.
RUN groupadd --system --gid 10001 crucible \
    && useradd --system --uid 10001 --gid crucible --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin crucible
COPY --from=build /opt/crucible /opt/crucible
WORKDIR /opt/crucible/share
COPY data ./data
# Two malloc arenas: with many gRPC threads, glibc's default of eight per core keeps
# freed buffers per thread and the aggregator's memory grows with participants.
ENV PATH=/opt/crucible/bin:$PATH \
    MALLOC_ARENA_MAX=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/cache
USER 10001:10001
# gRPC (aggregator), then /metrics of the aggregator, participant and operator.
EXPOSE 7443 9464 9465 9466
ENTRYPOINT ["crucible"]
CMD ["--help"]
