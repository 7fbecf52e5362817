"""Reconciliation's pure part: how two copies of a ticket are compared, how a disagreement is decided, and
how a run is reported. No I/O and no import of the hub: the use case (`hub.usecases.reconcile`) reads the
systems and the store, calls these, and applies what they decide.

    fingerprint.py   a stable hash of a copy's canonical fields (sorted keys, orjson, blake2b)
    compare.py       which fields two copies disagree on: hashes first, deepdiff only where they differ
    resolve.py       per field: the newest source modified-at wins, a clock-skew tie goes to author rank,
                     then system rank, else an operator decides; non-owners that differ are drift
    report.py        the run as JSON (documented schema), CSV (UTF-8 with BOM) and a self-contained HTML page
"""
