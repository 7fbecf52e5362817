"""`tickethub demo` (registered under the `tickethub.commands` entry point group)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:  # loaded when the command runs, not whenever `tickethub` starts
    from demo.story import Day
    from demo.world import World


def demo(fast: Annotated[bool, typer.Option("--fast", help="no pauses between the steps (for tests)")] = False,
         keep: Annotated[bool, typer.Option("--keep", help="leave the hub and the twins running afterwards and "
                                            "print their URLs (Ctrl-C stops them)")] = False,
         port: Annotated[int, typer.Option(help="the hub's API port on 127.0.0.1")] = 8000,
         workdir: Annotated[Path, typer.Option(help="the demo's database, configuration, logs and reports; "
                                               "emptied first if an earlier demo made it")] = Path("var/demo"),
         ) -> None:
    """Play a service ticket's day through the hub and five sandbox systems (CRM, ERP, MES, WMS, courier):
    `tickethub up` on the embedded default, the twins on loopback ports, a live display, a summary."""
    from demo.display import Narrator
    from demo.story import Day
    from demo.world import DemoError, World

    console = Console()
    world = World(workdir.resolve(), port)
    narrator = Narrator(console, 0.0 if fast else 2.5)
    started = time.monotonic()
    try:
        world.start(lambda text: console.print(f"[dim]{text}[/]"))
    except DemoError as exc:
        console.print(f"[bold red]tickethub demo: {exc}[/]")
        world.stop()
        raise typer.Exit(1) from exc
    day = Day(world, narrator)
    narrator.day = day
    ok = False
    try:
        live = narrator.live()
        if live is None:
            outcomes = day.play()
        else:
            with live:
                outcomes = day.play()
        ok = len(outcomes) == 6 and all(o.ok for o in outcomes)
        summary = _summary(world, day, ok, time.monotonic() - started)
        (world.workdir / "demo.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
        _print_summary(console, world, day, summary)
        if keep:
            _serve_until_interrupted(console, world, day)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        world.stop()
    if not ok:
        raise typer.Exit(1)


def _summary(world: World, day: Day, ok: bool, elapsed: float) -> dict[str, object]:
    reports = {}
    if day.run_id is not None:
        reports = {fmt: str(world.report_dir / f"reconcile-{day.run_id}.{fmt}") for fmt in ("json", "csv", "html")}
    return {"ok": ok, "seconds": round(elapsed, 1), "ticket_id": day.ticket_id, "local_ids": day.local,
            "reconcile_run": day.run_id, "api": world.base, "console": f"{world.base}/console/runs",
            "reports": reports, "workdir": str(world.workdir),
            "steps": [o.as_json() for o in day.outcomes]}


def _print_summary(console: Console, world: World, day: Day, summary: dict[str, object]) -> None:
    console.rule("summary")
    for outcome in day.outcomes:
        figures = ", ".join(f"{what} {seconds:.2f} s" for what, seconds in outcome.measured.items())
        mark = "[green]✓[/]" if outcome.ok else "[bold red]✗[/]"
        console.print(f"{mark} {outcome.number}. {outcome.title}" + (f"  [dim]({figures})[/]" if figures else ""))
    verdict = "[green]the whole story played[/]" if summary["ok"] else "[bold red]the story stopped short[/]"
    console.print(f"{verdict} in {summary['seconds']} s; ticket {day.ticket_id or '(none)'}")
    if day.run_id is not None:
        console.print(f"reconciliation report: {world.report_dir / f'reconcile-{day.run_id}.html'} (open it in a "
                      f"browser; also .json and .csv beside it), and {world.base}/reconcile/runs/{day.run_id}.html")
        console.print(f"operator console: {world.base}/console/runs/{day.run_id} (ticket: "
                      f"{world.base}/console/tickets/{day.ticket_id}); log in with any name and the API token")
    console.print(f"the hub's API: {world.base}/docs; its log: {world.workdir / 'hub.log'}; "
                  f"this summary: {world.workdir / 'demo.json'}")


def _serve_until_interrupted(console: Console, world: World, day: Day) -> None:
    auth = f"-H 'Authorization: Bearer {world.token}'"
    console.print(f"\n[bold]still running[/] (Ctrl-C stops the hub and the twins). Try:\n"
                  f"  curl {auth} {world.base}/tickets/{day.ticket_id}\n"
                  f"  curl {auth} {world.base}/tickets/{day.ticket_id}/history\n"
                  f"  curl {auth} '{world.base}/deliveries?system=erp'\n"
                  f"  curl {auth} {world.base}/reconcile/runs\n"
                  f"  tickethub --config {world.config} stats\n"
                  f"the API token is the one above (set for this demo only); the twins: " +
                  ", ".join(f"{name} {server.url}" for name, server in world.servers.items()), soft_wrap=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    while world.alive():
        time.sleep(0.5)
    console.print("[bold red]the hub stopped; see its log[/]")
