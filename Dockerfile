# One image for every oncall process (web, worker, scheduler, migrate).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin oncall

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY oncall ./oncall
COPY workers ./workers
COPY migrations ./migrations
RUN pip install . \
    && mkdir -p /home/oncall/instance \
    && chown oncall:oncall /home/oncall/instance

# The Alembic scripts live beside the package in the source tree: run the code
# from /app so that the migrations are found next to it.
ENV PYTHONPATH=/app \
    ONCALL_INSTANCE_PATH=/home/oncall/instance

USER oncall
EXPOSE 8000
CMD ["oncall", "web"]
