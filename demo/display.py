"""What the demo shows while it plays: the steps as they go, and what each system holds now (read from the twins
themselves) beside the hub's golden record (read through its API). A live Rich display in a terminal; plain
lines otherwise (a log, a test)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from demo.story import Day, StepOutcome
from hub.mapping_files import DEFAULT_DIR, default_systems, load_mappings

SHOWN = ("customer.phone", "customer.address", "customer.email", "status", "production.progress",
         "shipment.waybill", "shipment.status")
COLUMNS = ("crm", "erp", "mes", "wms")


class Narrator:
    """Tells the story on a console; `live()` wraps the play in a live display when the console is a terminal."""

    def __init__(self, console: Console, pause_seconds: float):
        self.console = console
        self.pause_seconds = pause_seconds
        self.day: Day | None = None
        self.current = ""
        self._golden: tuple[float, dict[str, Any]] = (0.0, {})
        mappings = load_mappings(DEFAULT_DIR, default_systems())
        self.paths = {(system, name): m.fields[name].system_field
                      for system, m in mappings.systems.items() if system in COLUMNS
                      for name in SHOWN if name in m.fields}

    # ---- Narrator protocol ---------------------------------------------------------------------------

    def begin(self, number: int, title: str) -> None:
        self.current = f"{number}. {title}"
        self._line(Text(self.current, style="bold cyan"))

    def say(self, text: str) -> None:
        self._line(Text("   " + text, style="dim"))

    def note(self, text: str) -> None:
        self._line(Text("   ✓ ", style="green") + Text(text))

    def end(self, outcome: StepOutcome) -> None:
        if not outcome.ok:
            self._line(Text("   ✗ ", style="bold red") + Text(outcome.lines[-1]))
        self.current = ""

    def pause(self) -> None:
        if self.pause_seconds:
            time.sleep(self.pause_seconds)

    # ---- display -------------------------------------------------------------------------------------

    def live(self) -> Live | None:
        if not self.console.is_terminal:
            return None
        return Live(self, console=self.console, refresh_per_second=4, transient=False)

    def _line(self, text: Text) -> None:
        self.console.print(text)

    def __rich__(self) -> Any:
        return Group(self.systems_table(), Text(self.current or "", style="bold"))

    def systems_table(self) -> Panel:
        day = self.day
        table = Table(expand=True, show_lines=False, header_style="bold")
        table.add_column("field", no_wrap=True, min_width=19)
        table.add_column("hub (golden)", style="bold", no_wrap=True, overflow="ellipsis", min_width=10)
        for column in (*COLUMNS, "courier"):
            table.add_column(column.upper(), no_wrap=True, overflow="ellipsis", min_width=8)
        golden = self._golden_fields()
        for name in SHOWN:
            row = [name, _cell((golden.get(name) or {}).get("value"))]
            for system in COLUMNS:
                path = self.paths.get((system, name))
                row.append(_cell(day.value(system, path)) if day and path and system in day.local else
                           ("" if path else "·"))
            row.append(self._courier(name))
            table.add_row(*row)
        title = f"ticket {day.ticket_id}" if day and day.ticket_id else "no ticket yet"
        return Panel(table, title=title, subtitle="· = the system has no such field")

    def _golden_fields(self) -> dict[str, Any]:
        at, cached = self._golden
        day = self.day
        if day is None or not day.ticket_id or time.monotonic() - at < 0.5:
            return cached
        try:
            fields = day.world.ticket(day.ticket_id).get("fields", {})
        except Exception:  # noqa: BLE001 (the display never stops the story)
            fields = cached
        self._golden = (time.monotonic(), fields)
        return fields

    def _courier(self, name: str) -> str:
        day = self.day
        courier = day.world.courier if day else None
        if courier is None or name not in ("shipment.waybill", "shipment.status"):
            return "·"
        for (_com, num), parcel in list(courier.parcels.items()):
            if (_com, num) not in courier.subscriptions:
                continue
            if name == "shipment.waybill":
                return num
            return parcel.checkpoints[-1].context if parcel.checkpoints else "subscribed"
        return ""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= 28 else text[:27] + "…"
