"""`tickethub reconcile`: run a reconciliation (with a progress bar in a terminal), show a run's report,
decide an item that waits for an operator."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.cli.app import app, err, hub_from, out, since_option
from hub.core.errors import InvalidValue

reconcile_app = typer.Typer(help="Reconciliation: compare every system's copy with the golden record, repair, "
                                 "report.")
app.add_typer(reconcile_app, name="reconcile")


class _Bar:
    """The run's progress as a Rich bar: records read per system, then tickets compared."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.discrepancies = 0

    def read(self, system: str, records: int) -> None:
        if system not in self.tasks:
            self.tasks[system] = self.progress.add_task(f"read {system}", total=None)
        self.progress.advance(self.tasks[system], records)

    def compared(self, tickets: int, copies: int, discrepancies: int) -> None:
        self.discrepancies += discrepancies
        if "compare" not in self.tasks:
            self.tasks["compare"] = self.progress.add_task("compare", total=None)
        self.progress.update(self.tasks["compare"], advance=tickets,
                             description=f"compared (discrepancies so far: {self.discrepancies})")


@reconcile_app.callback(invoke_without_command=True)
def reconcile(ctx: typer.Context,
              since: Annotated[str | None, typer.Option(help="only changes at or after this ISO time")] = None,
              system: Annotated[list[str] | None, typer.Option(help="only this system (repeat for more)")] = None,
              ticket: Annotated[list[str] | None, typer.Option(help="only this ticket (repeat for more)")] = None,
              dry_run: Annotated[bool, typer.Option("--dry-run", help="change nothing; report what would be done")]
              = False,
              full: Annotated[bool, typer.Option("--full", help="every record, not only what changed since the "
                                                  "last run; finds records deleted in a system")] = False,
              report_dir: Annotated[Path | None, typer.Option(help="write the report files here")] = None,
              on_workers: Annotated[bool, typer.Option("--on-workers", help="spread the run over the Celery workers "
                                                        "and return at once (follow it with `reconcile runs`)")]
              = False) -> None:
    """Run a reconciliation now (incremental since the last run unless --full or --since)."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.bootstrap import start_runtime
    from hub.store.reconcile import RunInProgress
    from hub.usecases.reconcile import NO_PROGRESS, ReconcileRequest, run_reconcile, write_reports
    from hub.usecases.reconcile import report_dir as default_dir

    hub = hub_from(ctx)
    request = ReconcileRequest(full=full, since=since_option(since), systems=tuple(system or ()),
                               tickets=tuple(ticket or ()), dry_run=dry_run)
    runtime = start_runtime(hub)
    if on_workers:
        from hub.messaging.publisher import RECONCILE_READ
        from hub.usecases.reconcile import start_run

        try:
            run_id, systems = start_run(hub, request)
        except (RunInProgress, InvalidValue) as exc:
            err.print(f"[red]tickethub reconcile: {exc}[/]")
            raise typer.Exit(3 if isinstance(exc, RunInProgress) else 2) from exc
        runtime.publish_reconcile_parts(run_id, RECONCILE_READ, systems)
        out.print(f"run {run_id} started on the workers ({', '.join(systems)}); its reports go to "
                  f"{default_dir(hub)}; follow it with `tickethub reconcile runs`")
        return
    try:
        if sys.stdout.isatty():
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=out) as bar:
                outcome = run_reconcile(hub, runtime.connector, request, _Bar(bar))
        else:
            outcome = run_reconcile(hub, runtime.connector, request, NO_PROGRESS)
    except RunInProgress as exc:
        err.print(f"[red]tickethub reconcile: {exc}[/]")
        raise typer.Exit(3) from exc
    except InvalidValue as exc:
        err.print(f"[red]tickethub reconcile: {exc}[/]")
        raise typer.Exit(2) from exc
    try:
        runtime.publish_deliveries(outcome.deliveries)
    except Exception as exc:  # noqa: BLE001 (they are stored: the sweeper sends them)
        err.print(f"[yellow]the repairs' writes are stored but could not be published now ({type(exc).__name__});"
                  " the sweeper sends them[/]")
    paths = write_reports(outcome.report, report_dir or default_dir(hub))
    _print_summary(outcome.report)
    out.print(f"reports: {', '.join(str(p) for p in paths)}")


@reconcile_app.command("runs")
def runs(ctx: typer.Context, limit: int = 20) -> None:
    """The latest runs, newest first."""
    hub = hub_from(ctx)
    with hub.store.unit_of_work() as uow:
        rows = uow.reconcile.runs(limit)
    table = Table(title="reconciliation runs")
    for column in ("run", "state", "mode", "dry run", "started (UTC)", "tickets", "discrepancies", "review"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["id"]), r["state"], r["mode"], "yes" if r["dry_run"] else "",
                      f"{r['started_at']:%Y-%m-%d %H:%M}", str(r["ticket_count"]), str(r["discrepancies"]),
                      str(r["awaiting_review"]))
    out.print(table)


@reconcile_app.command("show")
def show(ctx: typer.Context, run_id: Annotated[int, typer.Argument(help="the run")],
         fmt: Annotated[str, typer.Option("--format", help="table, json, csv or html")] = "table") -> None:
    """A run's report: a table in the terminal, or the JSON, CSV or HTML report on standard output."""
    from hub.usecases.reconcile import FORMATS, stored_report

    hub = hub_from(ctx)
    try:
        report = stored_report(hub, run_id)
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if fmt in FORMATS:  # written as it is rendered, its items read from the store a page at a time
        for chunk in report.stream(fmt):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return
    if fmt != "table":
        err.print(f"[red]--format takes table, json, csv or html, not {fmt}[/]")
        raise typer.Exit(2)
    _print_summary(report)
    table = Table(title=f"run {run_id}: discrepancies")
    for column in ("#", "ticket", "kind", "system", "field", "winner", "rule", "action", "why"):
        table.add_column(column)
    for item in report.iter_items():
        winner = json.dumps(item.winner.value, ensure_ascii=False) if item.winner else "—"
        table.add_row(str(item.id), item.ticket_id or "—", item.kind, item.system or "—", item.field or "—", winner,
                      item.rule, item.action, item.reason)
    out.print(table)


@reconcile_app.command("decide")
def decide_item(ctx: typer.Context, run_id: int, item_id: int,
                operator: Annotated[str, typer.Option(help="who decides (recorded in the history)")],
                accept: Annotated[bool, typer.Option("--accept", help="carry out the run's proposal")] = False,
                value: Annotated[str | None, typer.Option(help="override with this value (JSON, or plain text)")]
                = None) -> None:
    """Decide an item: accept the run's proposal, or override it with a value."""
    from hub.bootstrap import start_runtime
    from hub.usecases.reconcile import DecisionRefused, decide

    if accept == (value is not None):
        err.print("[red]give either --accept or --value[/]")
        raise typer.Exit(2)
    hub = hub_from(ctx)
    try:
        deliveries = decide(hub, run_id, item_id, operator, accept, _parse_value(value))
    except DecisionRefused as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    start_runtime(hub).publish_deliveries(deliveries)
    out.print(f"item {item_id} of run {run_id}: {'accepted' if accept else 'overridden'} by {operator}; "
              f"{len(deliveries)} write(s) scheduled")


def _print_summary(report: Any) -> None:
    s = report.summary
    out.print(f"run {report.run.id} ({report.run.mode}{', dry run' if report.run.dry_run else ''}): "
              f"{report.run.state}; {s.tickets} ticket(s), {s.copies_compared} cop(ies) compared, "
              f"{s.discrepancies} discrepanc(ies), {s.awaiting_review} awaiting review")
    for nc in report.not_checked:
        out.print(f"  [yellow]not checked[/] {nc.system}: {nc.reason}", highlight=False)
    for name, counts in (("by kind", s.by_kind), ("by action", s.by_action)):
        if counts:
            out.print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _parse_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
