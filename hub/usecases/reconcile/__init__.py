"""Use case: reconcile. Read every system's copy of the tickets, compare it with the golden record, decide
each disagreement by the rules in `reconcile.resolve`, repair what policy allows, and report the rest.

    run.py            the run in parts (start, read a system, plan, compare a chunk, finish), in one process
                      or spread over Celery workers
    discrepancies.py  one ticket's golden record against every copy: report items and proposals
    decisions.py      carrying proposals out; operators' decisions (accept, override)
    reports.py        a run's stored report, and its files
"""

from hub.usecases.reconcile.decisions import DecisionRefused, decide
from hub.usecases.reconcile.reports import FORMATS, StoredReport, load_report, report_dir, stored_report, write_reports
from hub.usecases.reconcile.run import (
    NO_PROGRESS,
    Progress,
    ReconcileRequest,
    RunOutcome,
    compare_part,
    finish_run,
    full_tonight,
    plan_compare,
    read_part,
    run_reconcile,
    scheduled_run,
    start_run,
)

__all__ = ["FORMATS", "NO_PROGRESS", "DecisionRefused", "Progress", "ReconcileRequest", "RunOutcome", "StoredReport",
           "compare_part", "decide", "finish_run", "full_tonight", "load_report", "plan_compare", "read_part",
           "report_dir", "run_reconcile", "scheduled_run", "start_run", "stored_report", "write_reports"]
