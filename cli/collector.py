"""``usersignals collector``: the HTTP collector in the foreground."""

from __future__ import annotations

import asyncio
import logging

import click

from usersignals.cli._options import bootstrap_option, settings_from
from usersignals.processes import install_repeat_filter

__all__ = ["command"]


@click.command("collector")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=int,
    default=None,
    help="TCP port, 0 for a free one [env USERSIGNALS_COLLECTOR_PORT; default 8080].",
)
@bootstrap_option
@click.option(
    "--allow-origin",
    default="*",
    show_default=True,
    envvar="USERSIGNALS_COLLECTOR_ALLOW_ORIGIN",
    metavar="ORIGINS",
    help="Web origins allowed by CORS: '*' or a comma-separated list "
    "[env USERSIGNALS_COLLECTOR_ALLOW_ORIGIN].",
)
def command(host: str, port: int | None, bootstrap: str | None, allow_origin: str) -> None:
    """Run the HTTP collector: POST /v1/events takes a JSON array of up to 500 events.

    Write keys come from USERSIGNALS_WRITE_KEYS (comma-separated); clients send
    'Authorization: Bearer <key>'. With no keys configured every request is accepted.
    GET /healthz answers 200 while Kafka is reachable and names the broker (embedded tansu or
    Apache Kafka); GET /openapi.json documents every endpoint. The PostHog, Segment,
    RudderStack and Snowplow SDKs can point their host here unchanged (/batch/, /v1/batch,
    /com.snowplowanalytics.snowplow/tp2, ...: docs/capture.md; Snowplow's app ids and origins
    in USERSIGNALS_SNOWPLOW_APP_IDS / _ORIGINS). Timeouts, the connection bound
    and rate limits are USERSIGNALS_COLLECTOR_* settings. SIGTERM or Ctrl-C stops accepting,
    flushes and exits.

    \b
    Example:
      USERSIGNALS_WRITE_KEYS=k1,k2 usersignals collector --port 8080 --bootstrap kafka:9092
      curl -H 'Authorization: Bearer k1' -H 'Content-Type: application/json' \\
           -d '[{"event_id":"e1","type":"session_start","user_id":"u1",
                 "ts":"2026-08-03T12:00:00Z"}]' http://127.0.0.1:8080/v1/events
    """
    from usersignals.ingest.collector import serve

    settings = settings_from(bootstrap=bootstrap, collector_port=port)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Hostile clients can make a warning per request; each kind is logged once per interval.
    install_repeat_filter(settings.log_repeat_s)
    # The collector logs request faults itself, without request bytes; aiohttp's own loggers
    # would quote them.
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # aiokafka logs every failed reconnect at ERROR; the collector reports outages itself
    # (503 answers, /healthz, one warning per failed request).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if not settings.write_keys:
        click.echo(
            "warning: no write keys configured (USERSIGNALS_WRITE_KEYS); every request may write",
            err=True,
        )

    def ready(url: str) -> None:
        click.echo(f"collector listening on {url}", err=True)

    asyncio.run(serve(settings, host=host, allow_origin=allow_origin, on_ready=ready))
    click.echo("collector stopped", err=True)
