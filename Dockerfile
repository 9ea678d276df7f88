# One image for every oncall process (web, worker, scheduler, migrate).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin oncall

WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY oncall ./oncall
COPY workers ./workers
# The package carries its migrations; the source tree is not needed afterwards.
RUN pip install . \
    && cd / && rm -rf /src \
    && mkdir -p /home/oncall/instance \
    && chown oncall:oncall /home/oncall/instance

WORKDIR /home/oncall
ENV ONCALL_INSTANCE_PATH=/home/oncall/instance

USER oncall
EXPOSE 8000
CMD ["oncall", "web"]
