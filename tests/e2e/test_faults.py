"""Faults: a worker killed mid-delivery, a broker restarted with events in flight. Nothing accepted is
lost, and no write is sent twice with different content."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.harness import HubProcesses, crm_case, wait_until

pytestmark = pytest.mark.e2e


def _delivered_tickets(hub: HubProcesses, system: str) -> set[str]:
    return {d["ticket_id"] for d in hub.deliveries(system=system, state="delivered", limit=1000)}


def test_a_worker_killed_mid_delivery_loses_nothing_and_resends_the_same_write(hub_factory, receivers) -> None:
    """SIGKILL while the ERP is answering: a new worker sends the identical write again and it lands."""
    hub: HubProcesses = hub_factory()
    receivers["erp"].script = [(200, 4.0)]  # the first answer is slow: the worker is killed while it waits
    hub.start()
    hub.send("evt-1", crm_case("CASE-1", 0, contact={"name": "Ada", "phone": "+44 4444 4444"}))
    wait_until(lambda: receivers["erp"].bodies(), what="the ERP to receive the first write")
    hub.kill("worker")
    hub.start("worker")

    wait_until(lambda: _delivered_tickets(hub, "erp"), timeout=60, what="the write to land after the kill")
    bodies = receivers["erp"].bodies()
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # sent again, the same content, the same delivery id
    assert receivers["erp"].received[0].headers["webhook-id"] == receivers["erp"].received[1].headers["webhook-id"]
    detail = hub.get(f"/deliveries/{bodies[0]['delivery_id']}").json()
    assert detail["state"] == "delivered" and detail["attempts"] == 2


def test_events_accepted_while_no_worker_runs_are_all_processed_later(hub_factory, receivers) -> None:
    """Webhooks accepted with the worker killed are all applied and delivered once a worker is back."""
    hub: HubProcesses = hub_factory()
    hub.start()
    hub.kill("worker")
    cases = [f"CASE-{n}" for n in range(20)]
    for n, case in enumerate(cases):
        assert hub.send(f"evt-{n}", crm_case(case, 0, contact={"phone": f"+44 5555 {n:04d}"})).status_code == 202
    hub.start("worker")
    wait_until(lambda: len(_delivered_tickets(hub, "erp")) == len(cases), timeout=90,
               what="every accepted event delivered")
    phones = sorted(b["fields"]["party.phone"] for b in receivers["erp"].bodies())
    assert phones == sorted(f"+44 5555 {n:04d}" for n in range(20))


def test_tickethub_up_killed_with_writes_in_flight_and_started_again_loses_nothing(hub_factory, receivers) -> None:
    """The embedded default as one command: `tickethub up` and all its children SIGKILLed while the ERP
    is still answering the first write; started again, every accepted event reaches the ERP and the WMS,
    and the write that was in flight is sent again with the same content."""
    hub: HubProcesses = hub_factory()
    receivers["erp"].script = [(200, 3.0)]
    hub.start("up")
    cases = [f"CASE-{n}" for n in range(12)]
    for n, case in enumerate(cases):
        assert hub.send(f"evt-{n}", crm_case(case, 0, contact={"phone": f"+44 7777 {n:04d}"})).status_code == 202
    wait_until(lambda: receivers["erp"].bodies(), what="the ERP to receive a write")
    hub.kill_group("up")
    hub.start("up")

    wait_until(lambda: len(_delivered_tickets(hub, "erp")) == len(_delivered_tickets(hub, "wms")) == len(cases),
               timeout=90, what="every accepted event delivered after the restart")
    phones = {b["fields"]["party.phone"] for b in receivers["erp"].bodies()}
    assert phones == {f"+44 7777 {n:04d}" for n in range(len(cases))}
    by_delivery: dict[int, list[dict]] = {}
    for body in receivers["erp"].bodies():
        by_delivery.setdefault(body["delivery_id"], []).append(body)
    assert any(len(sent) == 2 for sent in by_delivery.values())  # the write in flight at the kill, sent again
    assert all(all(b == sent[0] for b in sent) for sent in by_delivery.values())


@pytest.mark.integration
def test_a_broker_restart_with_events_in_flight_loses_nothing(hub_factory, receivers) -> None:
    """RabbitMQ stops and starts while webhooks arrive: every accepted event is applied and delivered once."""
    hub: HubProcesses = hub_factory("pg-rabbitmq")
    hub.start()
    accepted = []
    for n in range(10):
        accepted.append(hub.send(f"evt-a{n}", crm_case(f"CASE-{n}", 0, contact={"phone": f"+44 6666 {n:04d}"})))
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        for n in range(10, 20):  # accepted while the broker is down: the database holds them
            accepted.append(hub.send(f"evt-b{n}", crm_case(f"CASE-{n}", 0,
                                                            contact={"phone": f"+44 6666 {n:04d}"})))
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    assert [a.status_code for a in accepted] == [202] * 20
    wait_until(lambda: len(_delivered_tickets(hub, "erp")) == 20, timeout=120, what="all 20 delivered")
    phones = [b["fields"]["party.phone"] for b in receivers["erp"].bodies()]
    assert sorted(set(phones)) == sorted(f"+44 6666 {n:04d}" for n in range(20))
    by_delivery: dict[int, list[dict]] = {}
    for body in receivers["erp"].bodies():
        by_delivery.setdefault(body["delivery_id"], []).append(body)
    assert all(all(b == same[0] for b in same) for same in by_delivery.values())


@pytest.mark.parametrize(("backend", "bound"), [("embedded", 10.0),
                                                pytest.param("pg-rabbitmq", 30.0, marks=pytest.mark.integration)])
def test_writes_in_flight_at_a_crash_land_within_seconds_of_the_restart_not_after_the_lease(
        hub_factory, receivers, backend: str, bound: float) -> None:
    """With the default two-minute lease: `tickethub up` (embedded) or the deliveries worker (team mode)
    SIGKILLed while the ERP is answering; started again, the write that was in flight lands, identical, within
    10 s (embedded) / 30 s (team) of the restart: the new worker finds its predecessor's process gone and
    takes the write back at once."""
    hub: HubProcesses = hub_factory(backend)
    hub.write_config(lease_seconds=120.0)
    receivers["erp"].script = [(200, 5.0)]
    names = ("up",) if backend == "embedded" else ("api", "worker", "beat")
    hub.start(*names)
    assert hub.send("evt-1", crm_case("CASE-1", 0, contact={"phone": "+44 8888 0001"})).status_code == 202
    wait_until(lambda: receivers["erp"].bodies(), what="the ERP to receive the write")
    if backend == "embedded":
        hub.kill_group("up")
        hub.start("up")
    else:
        hub.kill("worker")
        hub.start("worker")
    restarted = time.monotonic()
    wait_until(lambda: _delivered_tickets(hub, "erp"), timeout=bound + 30, what="the write in flight to land")
    took = time.monotonic() - restarted
    assert took <= bound, f"the write landed {took:.1f} s after the restart"
    bodies = receivers["erp"].bodies()
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert receivers["erp"].received[0].headers["webhook-id"] == receivers["erp"].received[1].headers["webhook-id"]


@pytest.mark.integration
def test_a_postgresql_restart_mid_load_loses_nothing_doubles_nothing_and_stops_no_process(
        hub_factory, receivers) -> None:
    """Team mode (PostgreSQL + RabbitMQ, one process per role) under a steady stream of webhooks while
    PostgreSQL is stopped for a few seconds and started again: webhooks meanwhile are answered 503 (never 500)
    and accepted on the sender's retry; every event is applied once and delivered; no write is sent twice
    with different content; every process is still running; no hand restart."""
    hub: HubProcesses = hub_factory("pg-rabbitmq")
    hub.start()
    cluster = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True).stdout.split()[0]
    statuses: list[int] = []
    total = 120

    def send_all() -> None:
        for n in range(total):
            while True:
                try:
                    answer = hub.send(f"evt-{n}", crm_case(f"CASE-{n}", 0, contact={"phone": f"+44 9999 {n:04d}"}))
                except Exception:  # noqa: BLE001 (the API itself never went away; a sender retries anyway)
                    time.sleep(0.2)
                    continue
                statuses.append(answer.status_code)
                if answer.status_code == 202:
                    break
                assert answer.status_code == 503 and answer.headers.get("retry-after"), answer.text
                time.sleep(0.3)
            time.sleep(0.04)

    import threading

    sender = threading.Thread(target=send_all)
    sender.start()
    wait_until(lambda: len(statuses) >= 30, what="the first webhooks")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", "-m", "fast"], check=True)
    time.sleep(4)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"], check=True)
    sender.join(120)
    assert not sender.is_alive()

    wait_until(lambda: len(_delivered_tickets(hub, "erp")) == total, timeout=90,
               what="every accepted event delivered after the restart")
    assert 500 not in statuses and 503 in statuses
    assert statuses.count(202) == total
    phones = {b["fields"]["party.phone"] for b in receivers["erp"].bodies()}
    assert phones == {f"+44 9999 {n:04d}" for n in range(total)}
    by_delivery: dict[int, list[dict]] = {}
    for body in receivers["erp"].bodies():
        by_delivery.setdefault(body["delivery_id"], []).append(body)
    assert all(all(b == sent[0] for b in sent) for sent in by_delivery.values())
    assert len({b["ticket_id"] for b in receivers["erp"].bodies()}) == total  # each event made one ticket
    assert all(proc.poll() is None for proc in hub.procs.values()), hub.logs()


def test_a_worker_killed_mid_batch_resends_every_write_of_the_batch_and_marks_none_delivered_wrongly(
        hub_factory, receivers) -> None:
    """One event's writes to the ERP and the WMS travel in one task and are in flight together when the worker
    is SIGKILLed: neither is marked delivered before the kill; after the restart each lands, with the same
    content as its first attempt, and is delivered once on the record (two attempts)."""
    hub: HubProcesses = hub_factory()
    receivers["erp"].script = [(200, 4.0)]
    receivers["wms"].script = [(200, 4.0)]
    hub.start()
    hub.send("evt-1", crm_case("CASE-1", 0, contact={"name": "Ada", "phone": "+44 6666 6666"}))
    wait_until(lambda: receivers["erp"].bodies() and receivers["wms"].bodies(), what="both writes in flight")
    assert not _delivered_tickets(hub, "erp") and not _delivered_tickets(hub, "wms")
    hub.kill("worker")
    assert [d["state"] for d in hub.deliveries()] == ["in_flight", "in_flight"]  # nothing recorded as delivered
    hub.start("worker")

    wait_until(lambda: _delivered_tickets(hub, "erp") and _delivered_tickets(hub, "wms"), timeout=60,
               what="both writes to land after the kill")
    for system in ("erp", "wms"):
        bodies = receivers[system].bodies()
        assert len(bodies) == 2 and bodies[0] == bodies[1], system
        detail = hub.get(f"/deliveries/{bodies[0]['delivery_id']}").json()
        assert detail["state"] == "delivered" and detail["attempts"] == 2


def test_a_worker_killed_with_several_tasks_in_flight_resends_each_write_and_marks_none_delivered_wrongly(
        hub_factory, receivers) -> None:
    """Three events' writes to the ERP and the WMS, three tasks whose claims (and outcomes) the worker shares
    among its threads, all in flight when the worker is SIGKILLed: none is marked delivered before the kill;
    after the restart each of the six lands with the content of its first attempt, delivered once on the record."""
    hub: HubProcesses = hub_factory()
    receivers["erp"].script = [(200, 4.0)] * 3  # the first three answers are slow: the kill comes meanwhile
    receivers["wms"].script = [(200, 4.0)] * 3
    hub.start()
    for n in (1, 2, 3):
        hub.send(f"evt-{n}", crm_case(f"CASE-{n}", 0, contact={"name": f"Ada {n}", "phone": f"+44 6666 666{n}"}))
    wait_until(lambda: len(receivers["erp"].bodies()) == 3 and len(receivers["wms"].bodies()) == 3,
               what="six writes in flight")
    hub.kill("worker")
    assert [d["state"] for d in hub.deliveries()] == ["in_flight"] * 6  # nothing recorded as delivered
    hub.start("worker")

    wait_until(lambda: len(_delivered_tickets(hub, "erp")) == 3 and len(_delivered_tickets(hub, "wms")) == 3,
               timeout=60, what="the six writes to land after the kill")
    for system in ("erp", "wms"):
        sent: dict[int, list[dict[str, object]]] = {}
        for body in receivers[system].bodies():
            sent.setdefault(int(body["delivery_id"]), []).append(body)
        assert len(sent) == 3 and all(len(b) == 2 and b[0] == b[1] for b in sent.values()), system
        for delivery_id in sent:
            detail = hub.get(f"/deliveries/{delivery_id}").json()
            assert detail["state"] == "delivered" and detail["attempts"] == 2
