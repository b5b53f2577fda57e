# One image for every Shortlist process: the trainer and the three gRPC servers.
# docker-compose.yml picks the console script per service (shortlist-train, shortlist-retrieval,
# shortlist-ranking, shortlist-gateway); `shortlist health --target host:port` is the health probe.

# --- build: compile what has no wheel (hnswlib ships an sdist only) into a virtualenv ---------
FROM python:3.11-slim AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# hnswlib compiles with -march=native unless told not to: an image built on one CPU would then
# die with SIGILL on an older one.
ENV HNSWLIB_NO_NATIVE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# A regular (non-editable) install: packages and stubs land in site-packages, /src is dropped.
# constraints.txt (`make lock`) pins every dependency to the versions the tests ran against.
RUN pip install --constraint constraints.txt .

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim

# LightGBM (and implicit's OpenMP kernels) load the system libgomp at import time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --user-group shortlist \
    && mkdir -p /app /app/state /app/gateway-state /artifacts \
    && chown shortlist:shortlist /app /app/state /app/gateway-state /artifacts
# The mount points of docker-compose.yml's named volumes are owned by the app user: an empty
# named volume mounted there takes this ownership, so the non-root processes can write into it
# (/artifacts: the trainer publishes, retrieval and ranking write the CURRENT pin; /app/state:
# retrieval's event log, SHORTLIST_RETRIEVAL_EVENT_LOG; /app/gateway-state: the gateway's
# experiment file and impressions log).

COPY --from=build /opt/venv /opt/venv
# The bundled datasets are not part of the wheel (training.datasets.BUNDLED points next to the
# source tree); $SHORTLIST_DATA_DIR is the lookup root for dataset names like ml-latest-small.
COPY data /app/data

ENV PATH=/opt/venv/bin:$PATH \
    OPENBLAS_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SHORTLIST_DATA_DIR=/app/data

WORKDIR /app
USER 10001:10001

# gRPC: gateway, retrieval, ranking; then their Prometheus /metrics (when *_METRICS_PORT is set).
EXPOSE 50051 50052 50053 9101 9102 9103

# docker-compose.yml overrides the command per service.
CMD ["shortlist", "--help"]
