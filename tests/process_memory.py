"""Resident memory of a process and its children, from /proc (Linux): for the long-recording test and benchmark."""

from __future__ import annotations

import os
import re

__all__ = ["tree_rss_mib"]


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB (0 once it is gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            continue
    total_kib = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        try:
            with open(f"/proc/{current}/status") as handle:
                match = re.search(r"VmRSS:\s+(\d+)", handle.read())
            total_kib += int(match.group(1)) if match else 0
        except OSError:
            continue
    return total_kib / 1024
