"""The operator console: server-rendered pages under /console (Jinja2, autoescaped, no build step, no CDN).

Runs (with a trend), a run's discrepancies (filters, pages, accept/override flagged items after a confirmation
that says what will be written where), a ticket across systems (golden record with provenance, links into each
system, the timeline of changes, refusals and deliveries), dead letters (inspect, replay), ownership (the
mappings' matrix and problems) and health (queues, first-attempt success, dwell breaches). Viewers read;
operators also decide and replay, and every decision records the operator's name (README "Operator console").
"""
