"""What humans agreed on: Krippendorff's alpha, per-annotator agreement, consensus, and the report.

Example (notebook)::

    from workspaces.agreement import krippendorff_alpha, read_report
    result = krippendorff_alpha(table, level="ordinal")          # columns unit, annotator, value
    report = read_report("runs/convabuse_demo")                  # the typed report.json
"""

from .alpha import (AgreementError, AlphaResult, AnnotatorAgreement, annotator_agreement, bio_alpha, distance_alpha,
                    krippendorff_alpha, masi_alpha, read_tidy_table)
from .render import MarkdownTable
from .report import AlphaBlock, JudgeBlock, Report, build_report, read_report, write_report
from .tables import human_table

__all__ = [
    "AgreementError",
    "AlphaBlock",
    "AlphaResult",
    "AnnotatorAgreement",
    "JudgeBlock",
    "MarkdownTable",
    "Report",
    "annotator_agreement",
    "bio_alpha",
    "build_report",
    "distance_alpha",
    "human_table",
    "krippendorff_alpha",
    "masi_alpha",
    "read_report",
    "read_tidy_table",
    "write_report",
]
