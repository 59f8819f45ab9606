# The bot in a container: data (SQLite and images) on a volume, settings from an env file.
# `docker compose up -d` builds and starts it from compose.yaml (docs/operations.md).
# The image's user is uid 1000, the first user of most Linux machines; ./data must be
# writable by it (or run with --user "$(id -u):$(id -g)").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/app/data \
    DATABASE_URL=sqlite+aiosqlite:////app/data/comfy-curator.db
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY bot ./bot
COPY cogs ./cogs
COPY comfy ./comfy
COPY db ./db
COPY orchestration ./orchestration
COPY scheduler ./scheduler
COPY pipelines ./pipelines
RUN pip install --no-cache-dir -c constraints.txt -e . \
    && useradd --create-home --uid 1000 curator && mkdir -p /app/data \
    && chown 1000 /app/data

USER 1000
VOLUME ["/app/data"]
CMD ["comfy-curator", "run"]
