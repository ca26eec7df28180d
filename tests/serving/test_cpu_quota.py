"""Torch's threads follow the container's CPU allowance, not the node's core count."""

from __future__ import annotations

import os
from pathlib import Path

from aiaas.serving.executor import cpu_quota, usable_cpus


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 1.5
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == affinity


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path) == 0.5
    assert usable_cpus(tmp_path) == 1  # never below one
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(tmp_path) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path / "missing") is None
