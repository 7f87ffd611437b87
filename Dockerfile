# The usersignals image: one CLI for the collector, the workers, the loader and the tools.
# It runs as the unprivileged user usersignals, which owns /data (warehouse and state).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY usersignals ./usersignals
COPY ingest ./ingest
COPY metrics ./metrics
COPY streams ./streams
COPY warehouse ./warehouse
COPY dashboards ./dashboards
COPY cli ./cli
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 usersignals \
    && mkdir -p /data/warehouse /data/state \
    && chown -R usersignals:usersignals /data
USER usersignals
ENV USERSIGNALS_WAREHOUSE=/data/warehouse USERSIGNALS_STATE_DIR=/data/state
WORKDIR /data
ENTRYPOINT ["usersignals"]
