"""generated/ is committed: it must be exactly what `make proto` produces from protos/."""

import filecmp
import subprocess
import sys

from veritas_grpc.config import PROJECT_ROOT


def test_generated_code_matches_the_protos(tmp_path):
    subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "veritas"
    committed = PROJECT_ROOT / "generated" / "veritas"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(
        p.relative_to(committed)
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh_files == committed_files, "run `make proto`: generated/ has other files"
    differing = [
        str(p) for p in fresh_files if not filecmp.cmp(fresh / p, committed / p, shallow=False)
    ]
    assert not differing, f"run `make proto`: generated/ is stale: {differing}"
