# The bot in a container: data (SQLite and images) on a volume, settings from an env file.
#   mkdir -p data && docker build -t comfy-curator .
#   docker run -d --name comfy-curator --user "$(id -u):$(id -g)" --env-file .env \
#     -v "$PWD/data:/app/data" --add-host=host.docker.internal:host-gateway comfy-curator
# With ComfyUI on the host, set COMFY_URL=http://host.docker.internal:8188 in .env.
# Without --user the bot runs as the image's own user, which needs write access to ./data.
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
COPY pipelines ./pipelines
RUN pip install --no-cache-dir -c constraints.txt -e . \
    && useradd --create-home curator && mkdir -p /app/data && chown curator /app/data

USER curator
VOLUME ["/app/data"]
CMD ["comfy-curator", "run"]
