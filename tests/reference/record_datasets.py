"""Record tinker-cookbook 0.6.1's answers for the datum-level regression cases.

`.venv/bin/python tests/reference/record_datasets.py` (needs `.venv-ref`, see `make
test-reference`) writes tests/fixtures/reference_cases/datasets.jsonl.gz from
`datasets_oracle.REGRESSIONS`: per case its recipe options, rows, and tinker's datum (or error)
per row. `tests/tasks/test_reference_datasets.py` replays it in plain `make test`.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference import datasets_oracle  # noqa: E402
from reference.oracle import Oracle, reference_python  # noqa: E402


def main() -> None:
    python = reference_python()
    if python is None:
        sys.exit("no reference environment (.venv-ref): run `make test-reference` first")
    oracle = Oracle(python)
    try:
        records = datasets_oracle.record_regressions(oracle)
    finally:
        oracle.close()
    out = datasets_oracle.REGRESSION_FILE
    with gzip.GzipFile(out, "wb", mtime=0) as fh:
        for rec in records:
            fh.write((json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n").encode())
    rows = sum(len(r["rows"]) for r in records)
    print(f"{out}: {len(records)} cases, {rows} rows")


if __name__ == "__main__":
    main()
