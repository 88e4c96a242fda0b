"""The sections that benchmarks run on their own (bench/jwks-shared, bench/citus) write into
BENCHMARKS.md: their own file in bench/, and the section in place before "## Notes"."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_section(name, title, text):
    """Write `text` (starting "## `title`") to bench/`name` and in place of BENCHMARKS.md's section
    of that title; running it again gives the same file."""
    with open(os.path.join(ROOT, "bench", name), "w") as f:
        f.write(text)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    report = open(path).read()
    report = re.sub(r"\n*## " + re.escape(title) + r"\n.*?(?=\n## |\Z)", "\n", report, flags=re.S).rstrip("\n") + "\n"
    report = report.replace("\n## Notes\n", "\n" + text + "\n## Notes\n", 1) if "\n## Notes\n" in report else report + "\n" + text
    with open(path, "w") as f:
        f.write(report)
