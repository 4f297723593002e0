# One image for both services: the api (search API + web UI) and the indexer (harvest + index).
# Stage 1 fetches the UI's npm dependencies (OpenSeadragon, swagger-ui) so nothing comes from a CDN at run time.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY web/ ./

FROM python:3.11-slim-bookworm
# PyPI's Linux torch wheels pull the CUDA libraries (~3 GB more image). A CPU-only install can take torch
# from PyTorch's own index first: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_URL=
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ICONOSEARCH_DATA_DIR=/data \
    ICONOSEARCH_WEB_DIR=/app/web \
    ICONOSEARCH_SERVER__HOST=0.0.0.0 \
    ICONOSEARCH_SERVER__PORT=8000 \
    HF_HOME=/models/hf \
    OPENCLIP_CACHE_DIR=/models/open_clip
# The non-root user owns /data and /models in the image, so fresh named volumes mounted there are
# writable by it (the engine copies the image's ownership into a new volume).
RUN useradd --uid 10001 --create-home iconosearch \
    && mkdir -p /data /models \
    && chown iconosearch:iconosearch /data /models
WORKDIR /app
# Dependencies first, from pyproject.toml alone: this (multi-GB) layer stays cached when only the
# sources or the README change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && if [ -n "$TORCH_INDEX_URL" ]; then pip install torch torchvision --index-url "$TORCH_INDEX_URL"; fi \
    && pip install -r /tmp/requirements.txt \
    && rm -rf /tmp/requirements.txt /root/.cache
COPY README.md ./
COPY src ./src
RUN pip install --no-deps . && rm -rf /app/src /root/.cache
COPY --from=web /web /app/web
COPY indexer/run.sh /usr/local/bin/iconosearch-indexer
USER iconosearch
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('ICONOSEARCH_SERVER__PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]
CMD ["iconosearch", "--log-json", "serve"]
