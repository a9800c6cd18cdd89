# YouSaid bot image. First version: the install steps move into a shared script (tested
# outside Docker) in the deployment issue.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md babel.cfg ./
COPY bot ./bot
COPY state_machines ./state_machines
COPY storage ./storage
COPY dialogues ./dialogues
COPY locales ./locales
RUN pip install . \
    && pybabel compile --domain messages --directory locales \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin yousaid \
    && mkdir -p /data \
    && chown yousaid:yousaid /data

USER yousaid

# The database and the secrets file live on the volume. In production the secrets file is
# never generated: create it once with `python -m bot secrets-init` and back it up.
ENV DATABASE_PATH=/data/yousaid.db \
    SECRETS_PATH=/data/secrets \
    DIALOGUES_DIR=/app/dialogues \
    LOCALES_DIR=/app/locales \
    YOUSAID_ENV=production
VOLUME ["/data"]

HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot", "health"]

CMD ["python", "-m", "bot", "run"]
