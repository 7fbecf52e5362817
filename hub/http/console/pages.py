"""The console's routes: thin handlers that read through the store and the use cases and render a template."""


import json
import math
import os
import secrets
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.bootstrap import Hub
from hub.core.canonical import FIELDS
from hub.core.errors import InvalidTicketId
from hub.core.ticket_ids import parse_ticket_id
from hub.http.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Gate, Operator, csrf_ok
from hub.http.console.i18n import LANGUAGES, pick_language, translator, value_namer
from hub.usecases.reconcile import StoredReport, stored_report
from hub.usecases.reconcile.decisions import DecisionRefused, decide
from hub.usecases.replay import replay_delivery

HERE = Path(__file__).parent
MAX_FORM_BYTES = 256 * 1024
FLASHES = ("decided", "replayed")
ITEM_FILTERS = ("system", "field", "rule", "action", "kind", "author")


class _Redirect(Exception):
    def __init__(self, url: str):
        self.url = url


class ConsoleError(Exception):
    """A request the console refuses: shown as a page with the status and what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def console_router(hub: Hub, api_token: str, publish_deliveries: Callable[[list[int]], None] | None = None,
                   broker_check: Callable[[], None] | None = None
                   ) -> tuple[APIRouter, StaticFiles, Callable[[Request, "ConsoleError"], Response]]:
    """The /console routes, its static files (to mount at /console/static) and the page for a refusal."""
    settings = hub.settings.console
    gate = Gate(settings, api_token, os.environ)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                            trim_blocks=True, lstrip_blocks=True)
    templates.filters["when"] = _when
    templates.filters["show"] = _show
    router = APIRouter(prefix="/console", include_in_schema=False)

    # ---- plumbing ------------------------------------------------------------------------------------

    def language(request: Request) -> str:
        return pick_language(request.cookies.get("lang"), request.headers.get("accept-language"))

    def render(request: Request, template: str, me: Operator | None, status: int = 200, **context: Any) -> Response:
        lang = language(request)
        flash = request.query_params.get("flash")
        page = templates.get_template(template).render(
            t=translator(lang), v=value_namer(lang), lang=lang, me=me, request_path=request.url.path,
            flash=flash if flash in FLASHES else None, flash_n=request.query_params.get("n", ""),
            flash_m=request.query_params.get("m", ""), **context)
        return _secured(HTMLResponse(page, status_code=status))

    def viewer(request: Request) -> Operator:
        me = gate.operator(request)
        if me is None:
            raise _Redirect("/console/login?" + urlencode({"next": _local(str(request.url.path))}))
        return me

    async def form(request: Request) -> dict[str, list[str]]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise ConsoleError(413, "form too large")
        return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def acting(request: Request, data: dict[str, list[str]]) -> Operator:
        """The operator behind a form that changes something: signed in, CSRF token right, operator role."""
        me = viewer(request)
        if not csrf_ok(me.csrf, _one(data, "csrf")):
            raise ConsoleError(403, translator(language(request))("csrf"))
        if not me.may_act:
            raise ConsoleError(403, translator(language(request))("forbidden"))
        return me

    Me = Annotated[Operator, Depends(viewer)]
    Form = Annotated[dict[str, list[str]], Depends(form)]

    # ---- login -----------------------------------------------------------------------------------------

    @router.get("/login")
    def login_page(request: Request, next: str = "/console/runs") -> Response:  # noqa: A002 (the query's name)
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", None, next=_local(next), csrf=token, failed=False)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="lax", secure=gate.secure(request),
                            path="/console")
        return response

    @router.post("/login")
    def login(request: Request, data: Form) -> Response:
        target = _local(_one(data, "next") or "/console/runs")
        if not csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), _one(data, "csrf")):
            raise ConsoleError(403, translator(language(request))("csrf"))
        name, secret = _one(data, "name").strip(), _one(data, "secret")
        role = gate.check(name, secret)
        if role is None:
            token = secrets.token_urlsafe(24)
            refused = render(request, "login.html", None, status=401, next=target, csrf=token, failed=True,
                             name=name)
            refused.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="lax", secure=gate.secure(request),
                               path="/console")
            return refused
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, gate.issue(name, role), httponly=True, samesite="lax",
                            secure=gate.secure(request), path="/console",
                            max_age=int(settings.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    @router.post("/logout")
    def logout(request: Request, data: Form) -> Response:
        me = viewer(request)
        if not csrf_ok(me.csrf, _one(data, "csrf")):
            raise ConsoleError(403, translator(language(request))("csrf"))
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    @router.get("/lang/{lang}")
    def switch_language(lang: str, next: str = "/console/runs") -> Response:  # noqa: A002
        response = RedirectResponse(_local(next), status_code=303)
        if lang in LANGUAGES:
            response.set_cookie("lang", lang, samesite="lax", path="/console", max_age=365 * 86400)
        return response

    @router.get("")
    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/console/runs", status_code=303)

    # ---- runs ------------------------------------------------------------------------------------------

    @router.get("/runs")
    def runs_page(request: Request, me: Me) -> Response:
        with hub.store.unit_of_work() as uow:
            rows = uow.reconcile.runs(limit=100)
        trend = [int(r["discrepancies"]) for r in reversed(rows)]
        return render(request, "runs.html", me, runs=rows, spark=_sparkline(trend), active="runs")

    @router.get("/runs/{run_id}")
    def run_page(request: Request, me: Me, run_id: int, page: int = 1) -> Response:
        report = _report(run_id)
        chosen = {k: request.query_params.get(k, "") for k in ITEM_FILTERS}
        size = settings.page_size
        page = max(1, page)
        # the items stream from the store a page at a time: only the page shown (and the last page, in case
        # the page asked for is past the end) is held, however many items the run has
        wanted: list[Any] = []
        last: deque[Any] = deque(maxlen=size)
        total = 0
        seen: dict[str, set[str]] = {key: set() for key in ITEM_FILTERS}
        for item in report.iter_items():
            for key, value in _filter_values(item).items():
                if value:
                    seen[key].add(value)
            if not _matches(item, chosen):
                continue
            total += 1
            last.append(item)
            if (page - 1) * size < total <= page * size:
                wanted.append(item)
        pages = max(1, math.ceil(total / size))
        if page > pages:
            page, wanted = pages, list(last)[-(total - (pages - 1) * size):] if total else []
        options = {key: sorted(values) for key, values in seen.items()}
        query = {k: v for k, v in chosen.items() if v}
        return render(request, "run.html", me, report=report, items=wanted,
                      total=total, page=page, pages=pages, options=options, chosen=chosen,
                      query=urlencode(query), csrf=me.csrf, active="runs",
                      spark=_sparkline([p.discrepancies for p in report.trend] + [report.summary.discrepancies]))

    @router.post("/runs/{run_id}/confirm")
    def confirm_decisions(request: Request, run_id: int, data: Form) -> Response:
        me = acting(request, data)
        report = _report(run_id)
        chosen = _decisions(data, _selected(report, data))
        if not chosen:
            return render(request, "confirm.html", me, report=report, plan=[], csrf=me.csrf, status=422,
                          nothing=True, active="runs")
        t = translator(language(request))
        with hub.store.unit_of_work() as uow:
            proposals = {item.id: (uow.reconcile.item(run_id, item.id) or {}).get("proposal")
                         for item, _, _, _ in chosen}
        plan = [{**_plan(item, accept, value, proposals[item.id], hub, t("golden")), "raw_text": text}
                for item, accept, value, text in chosen]
        return render(request, "confirm.html", me, report=report, plan=plan, csrf=me.csrf, nothing=False,
                      active="runs")

    @router.post("/runs/{run_id}/decide")
    def decide_items(request: Request, run_id: int, data: Form) -> Response:
        me = acting(request, data)
        report = _report(run_id)
        chosen = _decisions(data, _selected(report, data))
        deliveries: list[int] = []
        refusals: list[tuple[int, int, str]] = []  # (item, status, why)
        for item, accept, value, _ in chosen:
            try:
                deliveries += decide(hub, run_id, item.id, me.name, accept, None if accept else value)
            except DecisionRefused as exc:
                refusals.append((item.id, exc.status, str(exc)))
        if deliveries and publish_deliveries is not None:
            publish_deliveries(deliveries)
        done = len(chosen) - len(refusals)
        if refusals:  # said on a page of its own, with what was done: never lost in a redirect
            status = 200 if done else refusals[0][1]
            return render(request, "decided.html", me, status=status, report=report, done=done,
                          deliveries=len(deliveries), refusals=refusals, active="runs")
        query = urlencode({"flash": "decided", "n": done, "m": len(deliveries)})
        return RedirectResponse(f"/console/runs/{run_id}?{query}", status_code=303)

    @router.get("/runs/{run_id}/report.{fmt}")
    def run_report(me: Me, run_id: int, fmt: str) -> Response:
        media = {"html": "text/html; charset=utf-8", "json": "application/json", "csv": "text/csv; charset=utf-8"}
        if fmt not in media:
            raise ConsoleError(404, f"no report format `{fmt}`")
        # streamed from the store; self-contained (its own inline style), and sandboxed: no script runs in it
        return StreamingResponse(_report(run_id).stream(fmt), media_type=media[fmt], headers={
            "Content-Disposition": f'inline; filename="reconcile-{run_id}.{fmt}"', "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
            "Cache-Control": "no-store"})

    def _report(run_id: int) -> StoredReport:
        try:
            return stored_report(hub, run_id)
        except LookupError as exc:
            raise ConsoleError(404, str(exc)) from None

    # ---- tickets ---------------------------------------------------------------------------------------

    @router.get("/tickets")
    def find_ticket(request: Request, me: Me, q: str = "") -> Response:
        q = q.strip()
        if q:
            found = _lookup(q)
            if found:
                return RedirectResponse(f"/console/tickets/{found}", status_code=303)
        return render(request, "search.html", me, q=q, missing=bool(q), active="tickets")

    def _lookup(q: str) -> str | None:
        with hub.store.unit_of_work() as uow:
            try:
                parse_ticket_id(q)
                return q if uow.tickets.exists(q) else None
            except InvalidTicketId:
                pass
            for system in hub.settings.systems:
                found = uow.tickets.find_by_xref(system, q)
                if found:
                    return found
        return None

    @router.get("/tickets/{ticket_id}")
    def ticket_page(request: Request, me: Me, ticket_id: str) -> Response:
        try:
            parse_ticket_id(ticket_id)
        except InvalidTicketId as exc:
            raise ConsoleError(404, str(exc)) from None
        with hub.store.unit_of_work() as uow:
            if not uow.tickets.exists(ticket_id):
                raise ConsoleError(404, f"no ticket {ticket_id}")
            ticket = uow.tickets.get(ticket_id)
            history = uow.tickets.history(ticket_id)
            deliveries = uow.deliveries.for_ticket(ticket_id)
            attempts = uow.deliveries.attempts_of([d["id"] for d in deliveries])
        links = {}
        for x in ticket.xrefs:
            template = hub.settings.systems[x.system].record_url if x.system in hub.settings.systems else None
            links[(x.system, x.local_id)] = template.format(local_id=x.local_id) if template else None
        timeline: list[dict[str, Any]] = [{"at": e.recorded_at, "kind": "change", "entry": e} for e in history]
        for d in deliveries:
            timeline.append({"at": d["created_at"], "kind": "queued", "delivery": d})
            for a in attempts[d["id"]]:
                timeline.append({"at": a["finished_at"] or a["started_at"], "kind": "attempt", "delivery": d,
                                 "attempt": a})
        timeline.sort(key=lambda row: (_aware(row["at"]), row["kind"] != "change"))
        refusals = [e for e in history if e.outcome not in ("applied", "echo", "duplicate")]
        return render(request, "ticket.html", me, ticket=ticket, links=links, timeline=timeline,
                      deliveries=deliveries, attempts=attempts, refusals=refusals, active="tickets")

    # ---- dead letters ----------------------------------------------------------------------------------

    @router.get("/dead")
    def dead_page(request: Request, me: Me, system: str = "", page: int = 1) -> Response:
        size = settings.page_size
        with hub.store.unit_of_work() as uow:  # one page read, however many dead letters there are
            total = uow.deliveries.count("dead", system or None)
            pages = max(1, math.ceil(total / size))
            page = min(max(1, page), pages)
            rows = uow.deliveries.find("dead", system or None, None, limit=size, offset=(page - 1) * size)
        return render(request, "dead.html", me, rows=rows, total=total,
                      page=page, pages=pages, system=system, systems=sorted(hub.settings.systems), csrf=me.csrf,
                      query=urlencode({"system": system} if system else {}), active="dead")

    @router.get("/deliveries/{delivery_id}")
    def delivery_page(request: Request, me: Me, delivery_id: int) -> Response:
        with hub.store.unit_of_work() as uow:
            row = uow.deliveries.get(delivery_id)
            if row is None:
                raise ConsoleError(404, f"no delivery {delivery_id}")
            attempts = uow.deliveries.attempts(delivery_id)
        return render(request, "delivery.html", me, d=row, attempts=attempts, csrf=me.csrf, active="dead")

    @router.post("/dead/replay")
    def replay(request: Request, data: Form) -> Response:
        acting(request, data)
        replayed, created = 0, []
        for raw in data.get("id", []):
            if not raw.isdigit():
                continue
            try:
                created += replay_delivery(hub, int(raw))
                replayed += 1
            except LookupError:
                continue
        if created and publish_deliveries is not None:
            publish_deliveries(created)
        return RedirectResponse("/console/dead?" + urlencode({"flash": "replayed", "n": replayed}), status_code=303)

    # ---- ownership and health ----------------------------------------------------------------------------

    @router.get("/ownership")
    def ownership_page(request: Request, me: Me) -> Response:
        from hub.mapping_files import check_mappings
        from hub.plugins import connector_schemas

        s = hub.settings
        _, problems = check_mappings(s.hub.mappings_dir, s.mapping_names(), connector_schemas(s))
        return render(request, "ownership.html", me, systems=list(hub.mappings.systems),
                      matrix=hub.mappings.matrix(), problems=problems, active="ownership")

    @router.get("/health")
    def health_page(request: Request, me: Me) -> Response:
        from hub.usecases.stats import service_stats

        with hub.store.unit_of_work() as uow:
            counts = uow.deliveries.counts()
        states = sorted({state for _, state, _ in counts})
        by_system: dict[str, Counter[str]] = {}
        for system, state, n in counts:
            by_system.setdefault(system, Counter())[state] = n
        ready, reason = True, ""
        try:
            with hub.store.unit_of_work() as uow:
                uow.conn.exec_driver_sql("SELECT 1")
            if broker_check is not None:
                broker_check()
        except Exception as exc:  # noqa: BLE001 (shown, never raised: this page is how an operator finds out)
            ready, reason = False, type(exc).__name__
        stats = service_stats(hub)
        return render(request, "health.html", me, states=states, by_system=by_system, stats=stats, ready=ready,
                      reason=reason, active="health")

    def refused(request: Request, exc: ConsoleError) -> Response:
        return render(request, "error.html", gate.operator(request), status=exc.status, status_code=exc.status,
                      message=str(exc))

    return router, StaticFiles(directory=HERE / "static"), refused


def install(app: Any, hub: Hub, api_token: str, publish_deliveries: Callable[[list[int]], None] | None = None,
            broker_check: Callable[[], None] | None = None) -> None:
    """Mount the console on the API app (when `[console] enabled`)."""
    if not hub.settings.console.enabled:
        return
    router, static, refused = console_router(hub, api_token, publish_deliveries, broker_check)
    app.mount("/console/static", static, name="console-static")
    app.include_router(router)

    @app.exception_handler(_Redirect)
    async def _to_login(_request: Request, exc: _Redirect) -> Response:
        return RedirectResponse(exc.url, status_code=303)

    @app.exception_handler(ConsoleError)
    async def _refused(request: Request, exc: ConsoleError) -> Response:
        return refused(request, exc)


# ---- helpers -------------------------------------------------------------------------------------------


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                                   "img-src 'self' data:; form-action 'self'; "
                                                   "frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _one(data: dict[str, list[str]], key: str) -> str:
    values = data.get(key) or [""]
    return values[0]


def _local(target: str) -> str:
    """Only a path inside the console (never another site: an open redirect)."""
    return target if target.startswith("/console") and not target.startswith("//") else "/console/runs"


def _filter_values(item: Any) -> dict[str, str | None]:
    return {"system": item.system, "field": item.field, "rule": item.rule, "action": item.action,
            "kind": item.kind, "author": item.responsible}


def _matches(item: Any, chosen: dict[str, str]) -> bool:
    values = _filter_values(item)
    return all(not want or (values[key] or "") == want for key, want in chosen.items())


def _selected(report: StoredReport, data: dict[str, list[str]]) -> dict[int, Any]:
    """The run's items whose ids the form checked, by id (read from the store: only those)."""
    ids = sorted({int(raw) for raw in data.get("item", []) if raw.isdigit() and int(raw) < 2**63})
    return {item.id: item for item in report.iter_items(ids=ids)} if ids else {}


def _decisions(data: dict[str, list[str]], by_id: dict[int, Any]) -> list[tuple[Any, bool, Any, str]]:
    """(item, accept, value, text typed) for each selected item: `item` ids checked; `choice-<id>`
    accept|override; `value-<id>` the override's value, read as the field's type (`_typed`)."""
    chosen = []
    for raw in dict.fromkeys(data.get("item", [])):
        if not raw.isdigit() or int(raw) not in by_id:
            continue
        item = by_id[int(raw)]
        accept = _one(data, f"choice-{raw}") != "override"
        text = _one(data, f"value-{raw}")
        if not accept and not text.strip():
            raise ConsoleError(422, f"item {item.id}: type the value to write, or choose to accept the proposal")
        chosen.append((item, accept, None if accept else _typed(item.field, text), text))
    return chosen


def _typed(field: str | None, text: str) -> Any:
    """What an operator typed, as a value of the field: text stays text (a phone number of digits included);
    whole numbers and true/false are read as such for the fields that take them; anything else is left for
    the field to refuse like any other wrong value."""
    spec = FIELDS.get(field or "")
    text = text.strip()
    if spec is not None and spec.type == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    if spec is not None and spec.type == "boolean":
        return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
                "是": True, "否": False}.get(text.lower(), text)
    return text


def _plan(item: Any, accept: bool, value: Any, proposal: dict[str, Any] | None, hub: Hub,
          golden: str) -> dict[str, Any]:
    """What a decision will write where, as `decide` carries it out: an override becomes the hub's value and
    goes to every system written the field; an accepted proposal either changes the hub's value (then goes to
    every such system but its source) or writes one system."""
    field = item.field or ""
    subscribers = hub.mappings.subscribers(field)
    if not accept:
        return {"item": item, "accept": False, "value": value, "targets": [golden, *subscribers], "problem": None}
    if not proposal:
        return {"item": item, "accept": True, "value": None, "targets": [], "problem": "no proposal"}
    if "apply" in proposal:
        source = proposal["apply"]["system"]
        return {"item": item, "accept": True, "value": proposal["apply"]["value"],
                "targets": [golden, *(s for s in subscribers if s != source)], "problem": None}
    write = proposal.get("write", {})
    values = write.get("fields") or {write.get("field"): write.get("value")}
    return {"item": item, "accept": True, "value": values.get(field, next(iter(values.values()), None)),
            "targets": [write.get("system")], "problem": None}


def _sparkline(values: list[int], width: int = 160, height: int = 28) -> dict[str, Any]:
    if not values:
        return {"points": "", "width": width, "height": height, "last": None}
    top = max(values) or 1
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values))
    return {"points": points, "width": width, "height": height, "last": values[-1]}


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: Any) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        return moment
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
