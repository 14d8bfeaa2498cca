"""Generate Python code and type stubs for protos/ into generated/ (or another folder).

`make proto` runs it; tests/unit/test_generated_code.py runs it into a temporary folder
and fails when the committed generated/ no longer matches the protos.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIRS = ("veritas", "veritas/v1")


def _plugin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} not found next to {sys.executable}: run `make install`")
    return str(path)


def generate(out_dir: Path) -> None:
    # Only Veritas's own files: the google/ files under protos/ are there for buf and
    # protoc-gen-es; their Python code comes from googleapis-common-protos.
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "veritas").rglob("*.proto")
    )
    well_known = Path(protoc.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in PACKAGE_DIRS:
        (out_dir / package / "__init__.py").touch()
    (out_dir / "veritas" / "py.typed").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "generated")
    args = parser.parse_args()
    target = args.out / "veritas"
    if target.exists():
        shutil.rmtree(target)
    generate(args.out)
    print(f"generated {sum(1 for _ in target.rglob('*.py*'))} files under {target}")


if __name__ == "__main__":
    main()
