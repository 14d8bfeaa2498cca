"""generated/ts/src is committed: it must be exactly what `make proto` produces from protos/
(scripts/gen_ts.py, with the protoc-gen-es that generated/ts/package-lock.json pins)."""

import filecmp
import subprocess
import sys

from veritas_grpc.config import PROJECT_ROOT

COMMITTED = PROJECT_ROOT / "generated" / "ts" / "src"


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_generated_typescript_matches_the_protos(tmp_path):
    fresh = tmp_path / "src"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "gen_ts.py"), "--out", str(fresh)],
        capture_output=True,
        text=True,
    )
    # No skip without generated/ts/node_modules: `make test` installs it first.
    assert result.returncode == 0, result.stderr
    assert _files(fresh) == _files(COMMITTED), "run `make proto`: generated/ts/src has other files"
    differing = [
        str(p) for p in _files(fresh) if not filecmp.cmp(fresh / p, COMMITTED / p, shallow=False)
    ]
    assert not differing, f"run `make proto`: generated/ts/src is stale: {differing}"
