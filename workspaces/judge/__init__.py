"""How far a labeler is trusted, measured on the human reference: calibrate -> gate (-> drift).

Reads labels (`labels.parquet`, `student_labels.parquet`) and the human reference from the run dir; writes
`calibration.json` and appends to `gate_history.jsonl`.
"""
