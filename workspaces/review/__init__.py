"""What humans see, and in what order: triage (auto / audit / review), selection, honeypots, draft suppression.

Reads the gate and the labels from the run dir; writes `routes.parquet`, `selection.jsonl` and `review_plan.parquet`.
Which items are honeypots, audits or suppressed is known only to the run dir, never to the server.
"""
