"""Summarise a drift run: packages whose newest release differs from the lock, and the tests that failed there.

``python .ci/drift_report.py LOCK MOVED JUNIT_XML PYTEST_STATUS``; prints warnings only, always exits 0.
``python .ci/drift_report.py --moved PIP_REPORT LOCK``: the releases pip resolved (``pip install --dry-run
--report``) that differ from the lock, as ``name==version`` lines for the overlay environment; when there are none
it prints nothing, writes one line to stderr and exits 1 (the locked run has tested the newest releases).
"""

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# pisasr itself (editable) and what ``pip freeze`` leaves out of the lock
NOT_FROZEN = {"pisasr", "pip", "setuptools", "wheel", "distribute"}


def canonical(name: str) -> str:
    """PEP 503 names: ``PyYAML`` and ``pyyaml``, ``zope.interface`` and ``zope-interface`` are one package."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def pins(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[canonical(name)] = version.strip()
    return out


def failures(path: str) -> list[str]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    failed = []
    for case in root.iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            message = (problem.get("message") or "").splitlines()
            failed.append(
                f"{case.get('classname')}::{case.get('name')}: {message[0][:160] if message else ''}"
            )
    return failed


def moved_past_lock(report: str, lock: str) -> bool:
    installs = json.loads(Path(report).read_text())["install"]
    resolved = {
        canonical(m["metadata"]["name"]): m["metadata"]["version"]
        for m in installs
        if canonical(m["metadata"]["name"]) not in NOT_FROZEN
    }
    locked = pins(lock)
    moved = {n: v for n, v in sorted(resolved.items()) if locked.get(n) != v}
    if not moved:
        print(
            f"drift check: the newest releases are the lock's ({len(resolved)} packages); nothing more to test",
            file=sys.stderr,
        )
        return False
    dropped = sorted(set(locked) - set(resolved))
    if dropped:  # still visible through the overlay: say so rather than pretend they are gone
        print(f"# no longer required, still installed from the lock: {', '.join(dropped)}")
    for name, version in moved.items():
        print(f"{name}=={version}")
    return True


def passed(path: str) -> int:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0
    return sum(
        1
        for case in root.iter("testcase")
        if not any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
    )


def main(lock: str, moved_file: str, junit: str, status: str) -> None:
    locked, newest = pins(lock), pins(moved_file)
    notes = [line[2:] for line in Path(moved_file).read_text().splitlines() if line.startswith("# ")]
    moved = [
        f"{n} {locked.get(n, '(not in the lock)')} -> {v}"
        for n, v in sorted(newest.items())
        if locked.get(n) != v
    ]
    failed = failures(junit)
    if status == "124" and not failed:
        print(
            f"warning: drift check: {passed(junit)} fast tests passed with the newest releases ({len(moved)} "
            "package(s) past the lock), none failed, before the time budget (DRIFT_TEST_SECONDS) ran out"
        )
        for line in moved + notes:
            print(f"    {line}")
        return
    if status == "0" and not failed:
        print(
            f"drift check: the fast tests pass with the newest releases ({len(moved)} package(s) past the lock)"
        )
        return
    print("warning: drift check: with the newest releases (not the lock) the fast tests did not all pass")
    if status == "124":
        print("  the run was stopped at its time budget")
    for line in failed:
        print(f"  FAILED {line}")
    print("  packages past the lock:" + ("" if moved else " none"))
    for line in moved + notes:
        print(f"    {line}")


if __name__ == "__main__":
    if sys.argv[1] == "--moved":
        sys.exit(0 if moved_past_lock(sys.argv[2], sys.argv[3]) else 1)
    main(*sys.argv[1:5])
