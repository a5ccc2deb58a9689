# syntax=docker/dockerfile:1
# The API image. `docker compose up --build` runs it next to MongoDB (see docker-compose.yml); run alone
# (no MONGODB_URI) it starts SecantusDB's Python server (the image carries no secantusd-rs; fine for a try-out)
# with its data in $DATA_DIR/db.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data

RUN useradd --system --uid 10001 --home-dir /srv app \
    && mkdir -p /data/imports \
    && chown -R app /data

WORKDIR /srv
# .dockerignore admits only pyproject.toml, README.md and app/
COPY . .
# every dependency ships manylinux wheels: no compiler needed; the cache mount keeps rebuilds fast
RUN --mount=type=cache,target=/root/.cache/pip pip install .

USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0"]
