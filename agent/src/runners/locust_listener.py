# Written next to the user's locustfile by herd: one JSON line per request, as it happens, to
# the file herd tails (HERD_LOCUST_OUT). Locust's own CSVs are cumulative; these are samples.
import json
import os
import time

from locust import events

_out = open(os.environ["HERD_LOCUST_OUT"], "a", buffering=1)


@events.request.add_listener
def _herd_request(request_type, name, response_time, response_length, response=None,
                  exception=None, start_time=None, **_kwargs):
    status = getattr(response, "status_code", 0) or 0
    _out.write(json.dumps({
        "t": time.time(),
        "label": name,
        "status": int(status),
        "ms": float(response_time or 0.0),
        "bytes": int(response_length or 0),
        "failed": exception is not None,
        "error": None if exception is None else type(exception).__name__,
    }) + "\n")


@events.spawning_complete.add_listener
def _herd_spawned(user_count, **_kwargs):
    _out.write(json.dumps({"t": time.time(), "users": int(user_count)}) + "\n")


@events.quitting.add_listener
def _herd_quit(**_kwargs):
    _out.flush()
