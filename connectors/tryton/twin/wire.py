"""The Tryton twin's wire format: Tryton's JSON classes, its `_timestamp` text and werkzeug's error pages.

Copied from trytond 8.2 (`protocols/jsonrpc.py` JSONEncoder/JSONDecoder, `backend/sqlite` EXTRACT(EPOCH))
and werkzeug 3.1 (the HTML an `abort(code)` sends), and checked byte for byte against a real server.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from decimal import Decimal
from typing import Any

# werkzeug.exceptions: (name, default description) of each status trytond aborts with
STATUS_PAGES = {
    400: ("Bad Request", "The browser (or proxy) sent a request that this server could not understand."),
    401: ("Unauthorized", "The server could not verify that you are authorized to access the URL requested. "
          "You either supplied the wrong credentials (e.g. a bad password), or your browser doesn't understand "
          "how to supply the credentials required."),
    403: ("Forbidden", "You don't have the permission to access the requested resource. It is either "
          "read-protected or not readable by the server."),
    404: ("Not Found", "The requested URL was not found on the server. If you entered the URL manually please "
          "check your spelling and try again."),
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
    422: ("Unprocessable Entity", "The request was well-formed but was unable to be followed due to semantic "
          "errors."),
    423: ("Locked", "The resource that is being accessed is locked."),
    429: ("Too Many Requests", "This user has exceeded an allotted request count. Try again later."),
    500: ("Internal Server Error", "The server encountered an internal error and was unable to complete your "
          "request. Either the server is overloaded or there is an error in the application."),
    502: ("Bad Gateway", "The proxy server received an invalid response from an upstream server."),
    503: ("Service Unavailable", "The server is temporarily unable to service your request due to maintenance "
          "downtime or capacity problems. Please try again later."),
    504: ("Gateway Timeout", "The connection to an upstream server timed out."),
}


def error_page(status: int, description: str | None = None) -> str:
    """werkzeug's HTML body for `abort(status[, description])`."""
    name, default = STATUS_PAGES.get(status, ("Error", ""))
    # werkzeug escapes with markupsafe, which writes quotes as &#34; and &#39;
    text = html.escape(description if description is not None else default)
    text = text.replace("&#x27;", "&#39;").replace("&quot;", "&#34;")
    return f"<!doctype html>\n<html lang=en>\n<title>{status} {name}</title>\n<h1>{name}</h1>\n<p>{text}</p>\n"


def encode_value(value: Any) -> Any:
    """One Python value as Tryton's JSONEncoder writes it (naive datetimes, Decimal as text, sets as lists)."""
    if isinstance(value, dt.datetime):
        return {"__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
                "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dt.time):
        return {"__class__": "time", "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"__class__": "bytes", "base64": base64.encodebytes(bytes(value)).decode("utf-8")}
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(payload: Any) -> str:
    """The body trytond sends: compact separators, non-ASCII escaped (json's default)."""
    return json.dumps(payload, default=encode_value, separators=(",", ":"))


def decode_object(obj: dict[str, Any]) -> Any:
    """json object_hook for Tryton's tagged values (datetime, date, time, timedelta, Decimal, bytes)."""
    kind = obj.get("__class__")
    if kind == "datetime":
        return dt.datetime(obj["year"], obj["month"], obj["day"], obj["hour"], obj["minute"], obj["second"],
                           obj["microsecond"])
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "time":
        return dt.time(obj["hour"], obj["minute"], obj["second"], obj["microsecond"])
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "bytes":
        return base64.decodebytes(obj["base64"].encode("utf-8"))
    return obj


def loads(raw: bytes) -> Any:
    """A request body as trytond's JSONDecoder reads it; a key missing from a class raises KeyError."""
    return json.loads(raw.decode("utf-8", "replace"), object_hook=decode_object)


def timestamp_text(moment: dt.datetime) -> str:
    """`_timestamp` as trytond on SQLite reads it back: CAST(EXTRACT(EPOCH FROM COALESCE(write_date,
    create_date)) AS VARCHAR), i.e. the naive stamp taken as the server's local time (UTC here) and printed by
    SQLite's REAL-to-text, 15 significant digits: "1796017007.14892"."""
    text = f"{moment.replace(tzinfo=dt.UTC).timestamp():.15g}"
    return text if "." in text or "e" in text else text + ".0"
