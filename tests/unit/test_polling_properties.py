"""Property test of polling Tryton (the sandbox twin): random interleavings of edits made in Tryton — some by
transactions that started earlier and commit late — of the hub's own writes into Tryton, of polls and of
the passing of time. Whatever the interleaving, once the hub has settled no change is lost (the ticket
holds Tryton's values, Tryton holds the hub's) and none is applied twice."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.canonical import normalize
from hub.store.engine import make_engine
from tests.tryton_world import HUB_USER, TrytonWorld

OWNED_BY_ERP = {"billing.amount", "parts.reserved"}  # the hub never writes these into the ERP
OVERLAP = 5.0  # seconds; the twin's late commits start at most this long before they commit

actions = st.lists(st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 1), st.integers(0, 500)),  # accounting changes a sale's total
    st.tuples(st.just("late"), st.integers(0, 1), st.integers(0, 500),   # ... in a transaction that began
              st.floats(0.001, OVERLAP)),                                 # that long ago and commits now
    st.tuples(st.just("hub"), st.integers(0, 1), st.integers(0, 9)),     # the CRM changes the fault; the hub
    st.tuples(st.just("poll"),),                                          # writes it into the sale
    st.tuples(st.just("advance"), st.floats(0.0, 3.0)),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(steps=actions)
def test_no_change_is_lost_or_applied_twice_whatever_the_interleaving(sqlite_template: Path,
                                                                      steps: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "hub.db"
        shutil.copy(sqlite_template, database)
        engine = make_engine(f"sqlite:///{database}")
        world = TrytonWorld.build(engine, Path(folder), overlap=OVERLAP)
        try:
            _run(world, steps)
        finally:
            world.close()
            engine.dispose()


def _run(world: TrytonWorld, steps: list[Any]) -> None:
    tickets = [world.open_ticket(name, minute) for minute, name in enumerate(("Ada Lovelace", "Grace Hopper"))]
    sales = [world.local_id(ticket_id, "erp") for _, ticket_id in tickets]
    faults = ["Pump leaks", "Pump leaks"]
    minute = 10
    for step in steps:
        kind = step[0]
        if kind == "edit":
            world.twin.edit("sale.sale", sales[step[1]], "accounting", total_amount=Decimal(step[2]))
        elif kind == "late":
            # it began `lag` ago, but after the sale's last write (Tryton would make it retry otherwise)
            last = world.twin.record("sale.sale", sales[step[1]])
            began = max(world.twin.clock.now() - timedelta(seconds=step[3]),
                        (last["write_date"] or last["create_date"]) + timedelta(microseconds=1))
            world.twin.edit("sale.sale", sales[step[1]], "accounting", stamp=began, total_amount=Decimal(step[2]))
        elif kind == "hub":
            minute += 1
            faults[step[1]] = f"Pump leaks, case {step[2]}"
            world.crm_change(tickets[step[1]][0], minute, case={"description": faults[step[1]]})
            world.deliver_all()
        elif kind == "poll":
            world.poll("erp")
            world.process_all()
            world.deliver_all()
        else:
            world.twin.advance(step[1])
    world.settle()

    for (_, ticket_id), sale_id, fault in zip(tickets, sales, faults, strict=True):
        sale = world.twin.record("sale.sale", sale_id)
        fields = world.ticket(ticket_id).fields
        # nothing lost, either way
        assert fields["billing.amount"].value == normalize("billing.amount", str(sale["total_amount"]))
        assert sale["description"] == fault == fields["fault.description"].value
        # nothing applied twice: each version of the sale is applied at most once, and the hub's own writes
        # never count as changes
        history = [h for h in world.history(ticket_id) if h.system == "erp"]
        applied = Counter((h.field, h.source_modified_at) for h in history if h.outcome == "applied")
        assert all(n == 1 for n in applied.values()), applied
        assert not [h for h in history if h.outcome == "applied" and h.author == HUB_USER
                    and h.field not in OWNED_BY_ERP]
