"""curate: human-calibrated LLM labeling on Argilla (human review) and Distilabel (LLM generation).

The loop, and where each part lives::

    config, items, rundir, votes, errors, redaction   core every stage uses (this folder's modules)
    pipelines/      label / prefer / embed / student      ask models: labels with confidence, pairs, vectors
    judge/          calibrate -> gate (-> drift)           how far a labeler is trusted, on the human reference
    review/         triage -> select (+ honeypots, suppression)   what humans see next, and in what order
    argilla_io/     publish ... reviewers in Argilla ... sync       every call to the Argilla server
    agreement/      alpha, consensus, report               what humans agreed on
    curated/        build -> card -> push                  splits with provenance; no unearned label
    cli/            the `curate` command line

Stages read the previous stage's output from the run directory (`rundir`), so any stage can be re-run alone.
"""
