"""The Tryton twin's HTTP face: the JSON-RPC routes, sessions, injected faults and the answer envelope.

Each request goes the real one's way (trytond 8.2 `wsgi.py`, `protocols/dispatcher.py`, `rpc.py`): an
injected fault first, then the body (400 when it is not JSON-RPC), the database (404), login/logout or the
session (401, empty body), the model (an unknown one is an error in the body), the method (403 when the
model has no such RPC method, 501 when it has one the twin leaves out), the context argument (422), then
the call. The answer is `{"id", "result"}` or `{"id", "error"}` with HTTP 200 — or, as real, the bare
result when the request held other keys than id, method and params.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.tryton.twin.domain import DomainError, NotEmulated
from connectors.tryton.twin.models import MODELS
from connectors.tryton.twin.store import TrytonError
from connectors.tryton.twin.wire import dumps, error_page, loads

if TYPE_CHECKING:
    from connectors.tryton.twin.state import TrytonState, TwinUser

SERIES = "8.2"
CRUD = ("create", "read", "write", "search", "search_read", "search_count")
READS = ("read", "search", "search_read", "search_count")
# RPC methods every real model has that the twin leaves out, and buttons it leaves out (501, not 403)
LEFT_OUT = {"delete", "copy", "fields_get", "default_get", "view_get", "fields_view_get", "view_toolbar_get",
            "export_data", "export_data_domain", "import_data", "history_revisions", "pre_validate", "resources",
            "process", "assign_wizard", "reset_bom", "manual_invoice", "manual_shipment", "modify_header",
            "handle_invoice_exception", "handle_shipment_exception"}
NOT_BUTTONS = {"assign"}  # transitions that are not RPC methods: the real one answers 403
LOCALE = {"date": "%m/%d/%Y", "grouping": [3, 3, 0], "decimal_point": ".", "thousands_sep": ",",
          "mon_grouping": [3, 3, 0], "mon_decimal_point": ".", "mon_thousands_sep": ",", "p_sign_posn": 1,
          "n_sign_posn": 1, "positive_sign": "", "negative_sign": "-", "p_cs_precedes": 1, "n_cs_precedes": 1,
          "p_sep_by_space": 0, "n_sep_by_space": 0}  # English


class Abort(Exception):
    """An HTTP-level refusal: werkzeug's page for `status` (or `body` as given)."""

    def __init__(self, status: int, description: str | None = None, *, body: str | None = None,
                 headers: dict[str, str] | None = None, content_type: str = "text/html; charset=utf-8"):
        super().__init__(status)
        self.status, self.headers, self.content_type = status, headers or {}, content_type
        self.body = error_page(status, description) if body is None else body


def build_app(twin: TrytonState) -> Starlette:
    """The ASGI app serving `twin`."""
    rpc = _Rpc(twin)
    return Starlette(routes=[
        Route("/rpc/", rpc.root, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{database}/rpc/", rpc.database, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{database}/rest/{rest:path}", _not_emulated, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{database}/session/{rest:path}", _not_emulated, methods=["GET", "POST"]),
        Route("/{rest:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ])


class _Rpc:
    def __init__(self, twin: TrytonState):
        self.twin = twin

    async def root(self, request: Request) -> Response:
        return await self._answer(request, self._root_call)

    async def database(self, request: Request) -> Response:
        return await self._answer(request, self._database_call)

    async def _answer(self, request: Request, handle: Any) -> Response:
        if request.method != "POST":
            return _page(Abort(405))
        raw = await request.body()
        try:
            body, method, params = _parse(request, raw)
        except Abort as abort:
            return _page(abort)
        fault = self.twin.take_fault(method)
        if fault is not None:
            if fault.delay_seconds:
                await anyio.sleep(fault.delay_seconds)
            if fault.error is not None:
                return _envelope(body, error=fault.error)
            if fault.status is not None:
                return _page(Abort(fault.status))
        try:
            result = handle(request, method, params)
        except Abort as abort:
            return _page(abort)
        except TrytonError as refused:
            return _envelope(body, error=refused.error)
        except NotEmulated as missing:
            return _not_emulated_text(f"{method}: {missing}")
        except DomainError as refused:
            return _envelope(body, error=[refused.args[0], ""])
        except Exception as exc:  # as trytond: any other Python error is its text, with no traceback
            return _envelope(body, error=[str(exc), ""])
        return _envelope(body, result=result)

    def _root_call(self, request: Request, method: str, params: list[Any]) -> Any:
        if method == "common.server.version":
            return SERIES
        if method == "common.db.list":
            return [self.twin.database]
        if method == "common.authentication.services":
            return []
        raise TrytonError([repr(method), ""])

    def _database_call(self, request: Request, method: str, params: list[Any]) -> Any:
        if request.path_params["database"] != self.twin.database:  # the real one names its file's full path
            raise Abort(503, f"Database '{request.path_params['database']}.sqlite' doesn't exist!")
        if method == "common.db.login":
            return self._login(*params)
        user, token = self._authenticate(request)
        if method == "common.db.logout":
            self.twin.logout(token)
            return None
        kind, _, rest = method.partition(".")
        model_name, _, name = rest.rpartition(".")
        if method.startswith("system.") or kind in ("wizard", "report"):
            raise NotEmulated("wizards, reports and system.* calls")
        if kind != "model":
            raise TrytonError([repr(kind), ""])
        model = MODELS.get(model_name)
        if model is None:
            raise TrytonError([repr(model_name), ""])
        if model_name == "res.user" and name == "get_preferences":
            return self._preferences(user, params)
        if model_name == "res.user" and name in ("set_preferences", "get_preferences_fields_view"):
            raise NotEmulated(f"res.user.{name}")
        if name not in CRUD and name not in model.buttons:
            raise Abort(403) if name in NOT_BUTTONS or name not in LEFT_OUT else NotEmulated(f"{model_name}.{name}")
        if not params or not isinstance(params[-1], dict):
            raise Abort(422, "Missing context argument")
        context = dict(params[-1])
        args = params[:-1]
        if name in ("write", *model.buttons) and args and _has_duplicates(args[0::2] if name == "write" else args[:1]):
            raise Abort(422, "Duplicate records")
        return self.twin.run_call(lambda stamp: _call(self.twin, user, model_name, name, args, context, stamp),
                                  writes=name not in READS)

    def _login(self, login: Any = None, parameters: Any = None, language: Any = None, *extra: Any) -> Any:
        if not isinstance(login, str):
            raise Abort(400, "user argument must be a string")
        if not isinstance(parameters, dict) or "password" not in parameters:
            raise TrytonError(["LoginException", ["password", f"Password for {login}", "password"]])
        answer = self.twin.login(login, str(parameters["password"]))
        if answer == "rate-limited":
            raise Abort(429)
        if not isinstance(answer, tuple):
            raise Abort(401)
        return [answer[0], answer[1], None]  # the third is the bus URL, None unless [bus] allow_subscribe

    def _authenticate(self, request: Request) -> tuple[TwinUser, str]:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        user, token = None, ""
        try:
            decoded = base64.b64decode(credentials.strip(), validate=False).decode()
            if scheme.lower() == "session":
                login, user_id, token = decoded.split(":", 2)
                user = self.twin.session_user(int(user_id), token)
            elif scheme.lower() == "basic":  # a login per call, counted as one (wrappers.py `user_id`)
                login, _, password = decoded.partition(":")
                answer = self.twin.login(login, password)
                if answer == "rate-limited":
                    raise Abort(429)
                if isinstance(answer, tuple):
                    self.twin.logout(answer[1])
                    user = self.twin.user(answer[0])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            user = None
        if user is None:  # werkzeug's 401 with no body; browsers asking via XHR get no Basic challenge
            xhr = request.headers.get("x-requested-with") == "XMLHttpRequest"
            raise Abort(401, body="", content_type="text/plain; charset=utf-8",
                        headers={} if xhr else {"WWW-Authenticate": 'Basic realm="Tryton"'})
        return user, token

    def _preferences(self, user: TwinUser, params: list[Any]) -> Any:
        if not params or params[0] is not True:
            raise NotEmulated("res.user.get_preferences other than context_only=true")
        return {"company_filter": "one", "employees": [], "companies": [1], "company": 1,
                "company.rec_name": self.twin.store.rec_name("company.company", 1), "language": "en",
                "language_direction": "ltr", "administrator": int(user.admin), "groups": [], "locale": LOCALE}


def _call(twin: TrytonState, user: TwinUser, model: str, name: str, args: list[Any], context: dict[str, Any],
          stamp: dt.datetime) -> Any:
    """One model method with the real one's positional parameters; a wrong count fails as Python does."""
    store, actor = twin.store, user.actor
    timestamps = context.pop("_timestamp", None) or {}
    active_test = bool(context.get("active_test", True))

    def create(cls: Any, vlist: Any) -> Any:
        return store.create(model, vlist, actor, stamp, context)

    def read(cls: Any, ids: Any, fields_names: Any) -> Any:
        return store.read(model, ids, fields_names)

    def write(cls: Any, records: Any, values: Any, *more: Any) -> None:
        pairs = [(records, values), *zip(more[0::2], more[1::2], strict=False)]
        for ids, changes in pairs:
            store.write(model, ids, changes, actor, stamp, timestamps)

    def search(cls: Any, domain: Any, offset: Any = 0, limit: Any = None, order: Any = None, count: Any = False,
               query: Any = False) -> Any:
        if count:  # trytond counts, then its RPC layer fails turning the count into a list of ids
            raise TrytonError(["'int' object is not iterable", ""])
        return store.search(model, domain, offset, limit, order, active_test)

    def search_read(cls: Any, domain: Any, offset: Any = 0, limit: Any = None, order: Any = None,
                    fields_names: Any = None) -> Any:
        ids = store.search(model, domain, offset, limit, order, active_test)
        rows = {r["id"]: r for r in store.read(model, ids, list(fields_names or []))}
        return [rows[i] for i in ids]

    def search_count(cls: Any, domain: Any, offset: Any = 0, limit: Any = None) -> Any:
        return len(store.search(model, domain, offset, limit, None, active_test))

    def button(cls: Any, records: Any, *more: Any) -> None:
        store.button(model, records, name, actor, stamp, stamp.date(), timestamps)

    methods: dict[str, Callable[..., Any]] = {"create": create, "read": read, "write": write, "search": search,
                                              "search_read": search_read, "search_count": search_count}
    method: Callable[..., Any] = methods.get(name, button)
    owner = "ModelStorage" if name in ("search_read", "search_count") else "ModelSQL"
    method.__qualname__ = f"{owner}.{name}" if name in methods else f"{MODELS[model].label.replace(' ', '')}.{name}"
    try:
        return method(None, *args)
    except TypeError as exc:
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:  # the call itself, not inside
            raise TrytonError([str(exc), ""]) from None
        raise


def _parse(request: Request, raw: bytes) -> tuple[dict[str, Any], str, list[Any]]:
    """trytond's JSONRequest: `rpc_method` and `rpc_params`, each a 400 when missing or unreadable."""
    if "json" not in request.headers.get("content-type", ""):
        raise Abort(400, "Not a RPC request")
    try:
        body = loads(raw)
        method = body["method"] or ""
    except Exception:
        raise Abort(400, "Unable to get RPC method") from None
    try:
        params = body["params"] or []
    except Exception:
        raise Abort(400, "Unable to get RPC params") from None
    return body, str(method), list(params)


def _has_duplicates(id_lists: list[Any]) -> bool:
    return any(isinstance(ids, list) and len(ids) != len({repr(i) for i in ids}) for ids in id_lists)


def _envelope(body: dict[str, Any], *, result: Any = None, error: Any = None) -> Response:
    if set(body) == {"id", "method", "params"}:
        payload = {"id": body.get("id", 0), **({"error": error} if error is not None else {"result": result})}
    elif error is not None:  # not JSON-RPC: trytond answers with an HTTP error instead
        if error and error[0] == "ConcurrencyException":
            return _page(Abort(423, str(error[1])))
        details = error[1] if len(error) > 1 else ""
        if error[0] == "LoginException":  # str() of the exception: its args tuple
            return _page(Abort(403, str(("LoginException", tuple(details)))))
        if error[0] == "UserError" and isinstance(details, list):
            return _page(Abort(400, " - ".join(str(d) for d in details[:2])))
        return _page(Abort(500, str(error[0])))
    else:
        payload = result
    return Response(dumps(payload), 200, media_type="application/json")


def _page(abort: Abort) -> Response:
    return Response(abort.body, abort.status, headers=abort.headers, media_type=abort.content_type)


def _not_emulated_text(what: str) -> Response:
    return Response(f"Not emulated by the Tryton sandbox twin (connectors/tryton/sandbox.py): {what}\n", 501,
                    media_type="text/plain; charset=utf-8")


async def _not_emulated(request: Request) -> Response:
    return _not_emulated_text(f"{request.method} {request.url.path}")


async def _not_found(request: Request) -> Response:
    return _page(Abort(404 if request.method != "OPTIONS" else 204))
