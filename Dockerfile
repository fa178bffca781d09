# bnviz: the Streamlit app, its core and its precomputed runs, served offline on port 8501.
# Build: docker build -t bnviz .    Run: docker run -p 8501:8501 bnviz
# One image serves one replica; deploy/ runs several behind nginx with sticky sessions.
FROM python:3.11.14-slim-bookworm

# Error details stay hidden as in .streamlit/config.toml, which a mounted config cannot undo
# (variables win over files); BROWSER_SERVER_ADDRESS is the address Streamlit prints at start:
# without one it asks checkip.amazonaws.com for the machine's address, a request off the machine.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=true \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_BROWSER_SERVER_ADDRESS=localhost

# tini as PID 1: it passes SIGTERM/SIGINT on to Streamlit and reaps orphaned processes (a
# worker whose parent died), which Streamlit as PID 1 would not; no `docker run --init` needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Where the CPU-only torch comes from, as pip options (PyPI's Linux wheel pulls gigabytes of
# CUDA): by default the PyTorch CPU index; e.g. "--find-links /mnt" for a wheel mounted there.
ARG TORCH_SOURCE="--index-url https://download.pytorch.org/whl/cpu"

# torch alone from that source; then the pinned requirements from PyPI, where the CPU torch
# already satisfies torch==2.13.0. hadolint reads TORCH_SOURCE as an unpinned package (torch
# is pinned; tests/test_dockerfile.py checks it).
COPY requirements.txt ./
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ${TORCH_SOURCE} torch==2.13.0 \
    && pip install --no-cache-dir -r requirements.txt \
    && groupadd --gid 10001 bnviz \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin bnviz

# Code and data stay owned by root: the app user can read them, not change them.
COPY .streamlit/ ./.streamlit/
COPY app.py ./
COPY app_pages/ ./app_pages/
COPY bnviz/ ./bnviz/
COPY assets/ ./assets/

# Numeric, so Kubernetes' runAsNonRoot can verify it. The training kernels are compiled now,
# into a cache the app user can write (numba recompiles there if the host's CPU differs).
USER 10001:10001
ENV NUMBA_CACHE_DIR=/home/bnviz/.cache/numba
RUN python -c "from bnviz.train import warm_up; print(f'kernels ready in {warm_up():.0f} s')"
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).read() != b'ok')"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
