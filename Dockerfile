# The usersignals image: one CLI for the collector, the workers, the loader and the tools.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY usersignals ./usersignals
COPY ingest ./ingest
COPY streams ./streams
COPY warehouse ./warehouse
COPY dashboards ./dashboards
COPY metrics ./metrics
RUN pip install --no-cache-dir . && useradd --create-home usersignals \
    && mkdir -p /data/warehouse /data/state && chown -R usersignals /data
USER usersignals
ENV USERSIGNALS_WAREHOUSE=/data/warehouse USERSIGNALS_STATE_DIR=/data/state
ENTRYPOINT ["usersignals"]
