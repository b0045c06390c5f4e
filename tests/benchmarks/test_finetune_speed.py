"""benchmarks/finetune_speed.py: its quick mode end to end (a real demo trial on the CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune_speed.py"


def test_quick_mode_times_a_real_trial_on_the_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = [line.split() for line in proc.stdout.splitlines() if line.startswith("cpu ")]
    variant, device, s_per_epoch, first, images_per_s, memory, loss, ratio = row
    assert device == "cpu" and memory == "-" and ratio == "1.0x"
    assert float(s_per_epoch) > 0 and float(images_per_s) > 0 and 0 < float(loss) < 10


def test_unknown_variants_are_refused_in_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--variants", "cpu,tpu"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown variants ['tpu']" in proc.stderr
