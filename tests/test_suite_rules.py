"""The suite's own rules: where everything is installed (CI), a missing server fails, not skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import skip_allowed

CASES = '''
import pytest

def test_needs_a_server():
    pytest.skip("nginx with the RTMP module not installed (nginx, libnginx-mod-rtmp)")

@pytest.mark.skipif(True, reason="no CUDA GPU")
def test_needs_a_gpu():
    pass
'''


def _outcome(folder: Path, strict: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "STREAMSR_STRICT_SKIPS"}
    if strict:
        env["STREAMSR_STRICT_SKIPS"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", str(folder)],
                          check=False, capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    return done.stdout.strip().splitlines()[-1]


def test_a_missing_server_fails_only_where_everything_must_be_installed(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_cases.py").write_text(CASES)
    assert _outcome(tmp_path, strict=False).startswith("2 skipped")
    assert _outcome(tmp_path, strict=True).startswith("1 failed, 1 skipped")


def test_machine_facts_may_be_skipped_everywhere():
    assert skip_allowed("no CUDA GPU", strict=True) and skip_allowed("root can write anywhere", strict=True)
    assert not skip_allowed("Debian's Chromium is not installed here", strict=True)
    assert not skip_allowed("ray not installed", strict=True) and skip_allowed("ray not installed", strict=False)
