"""A small survey-response export for the foundation's end-to-end slice.

The source-systems capability replaces this with the full generator; it stays small and
deterministic so the demo and tests can check exact numbers.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

COLUMNS = ["response_id", "respondent_email", "touchpoint", "responded_at", "ltr", "csat"]
TOUCHPOINTS = np.array(["relationship", "post-purchase", "post-support"])


def write_survey_responses(
    path: Path, *, responses: int, seed: int, end: datetime | None = None
) -> Path:
    """Write ``responses`` rows over the 90 days before ``end`` as a CSV export file."""
    rng = np.random.default_rng(seed)
    end = end or datetime(2026, 11, 1, tzinfo=UTC)
    # LTR skews positive, as real relationship surveys do (roughly 45% promoters, 20% detractors).
    ltr = rng.choice(
        11, size=responses, p=[0.02, 0.01, 0.02, 0.02, 0.03, 0.04, 0.06, 0.10, 0.25, 0.25, 0.20]
    )
    csat = np.clip(np.rint(1 + ltr * 0.4 + rng.normal(0, 0.6, responses)), 1, 5).astype(int)
    offsets = rng.integers(0, 90 * 24 * 3600, size=responses)
    touchpoint = TOUCHPOINTS[rng.integers(0, len(TOUCHPOINTS), size=responses)]
    customer = rng.integers(1, max(2, responses // 2), size=responses)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(responses):
            responded = end - timedelta(seconds=int(offsets[i]))
            writer.writerow(
                [
                    f"R{seed}-{i:07d}",
                    f"customer{customer[i]}@example.com",
                    touchpoint[i],
                    responded.isoformat(),
                    int(ltr[i]),
                    int(csat[i]),
                ]
            )
    return path
