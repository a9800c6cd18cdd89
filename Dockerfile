# YouSaid bot image: slim Python, non-root, catalogs compiled at build, data on a volume.
# The install steps live in deploy/install.sh, which tests/test_install_script.py also runs
# (in a temporary virtualenv), so a broken step fails `make test` without a Docker engine.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

COPY pyproject.toml babel.cfg ./
COPY deploy ./deploy
COPY bot ./bot
COPY state_machines ./state_machines
COPY storage ./storage
COPY dialogues ./dialogues
COPY locales ./locales

RUN sh deploy/install.sh \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin yousaid \
    && mkdir -p /data \
    && chown yousaid:yousaid /data

USER 10001:10001

# The database and the secrets file live on the volume. In production the secrets file is
# never generated: create it once with `python -m bot secrets-init`, and back it up.
# (SECRETS_PATH is a file path, not a secret: hence the DL3064 exception.)
# hadolint ignore=DL3064
ENV DATABASE_PATH=/data/yousaid.db \
    SECRETS_PATH=/data/secrets \
    DIALOGUES_DIR=/app/dialogues \
    LOCALES_DIR=/app/locales \
    YOUSAID_ENV=production \
    WEBHOOK_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot", "health"]

CMD ["python", "-m", "bot", "run"]
