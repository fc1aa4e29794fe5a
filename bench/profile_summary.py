"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) as two top-N tables.

    python bench/profile_summary.py PROFILE.txt [--top 20]

"self" is the share of samples where a function was on top of the stack; "inclusive" the share where it was
anywhere on it (counted once per sample). Functions are named ``function (file:line)`` without the line,
so a function's time is not split across its lines; paths are shortened to the package-relative part.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """py-spy's ``f (/…/broker/handlers/protected.py:63)`` as ``f (broker/handlers/protected.py)``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/broker/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/broker/":
                path = "broker/" + path
            break
    return f"{match['func']} ({path})"


def summarise(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, self counts and inclusive counts per function."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    total, own, inclusive = summarise(args.profile.read_text().splitlines())
    if total == 0:
        print("no samples")
        return
    print(f"{total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\n  {title:>9}  function")
        for name, count in counter.most_common(args.top):
            print(f"  {100 * count / total:8.1f}%  {name}")


if __name__ == "__main__":
    main()
