"""Regenerate the protobuf and gRPC code under clamor/v1 from proto/clamor/v1.

Usage: ``python scripts/generate_protos.py`` writes the code; ``--check`` regenerates into a
temporary folder and exits 1 when the committed code differs (CI runs this).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("clamor") / "v1"
INIT_TEXT = '"""Generated protobuf contracts of Clamor (package clamor.v1). Do not edit."""\n'


def generate(out_root: Path) -> list[Path]:
    """Run protoc over every .proto file; returns the generated files, relative to ``out_root``."""
    protos = sorted(PROTO_ROOT.glob("clamor/v1/*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    well_known = resources.files("grpc_tools") / "_proto"
    plugins = Path(sysconfig.get_path("scripts"))
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out=quiet:{out_root}",
        f"--mypy_grpc_out=quiet:{out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    package = out_root / PACKAGE_DIR
    (package / "__init__.py").write_text(INIT_TEXT)
    (package / "py.typed").write_text("")
    (out_root / "clamor" / "__init__.py").write_text('"""Clamor: generated contracts live in clamor.v1."""\n')
    return sorted(p.relative_to(out_root) for p in (out_root / "clamor").rglob("*") if p.is_file())


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(
            p.relative_to(ROOT) for p in (ROOT / "clamor").rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
        stale = [
            str(p) for p in fresh if not (ROOT / p).exists() or not filecmp.cmp(Path(tmp) / p, ROOT / p, shallow=False)
        ]
        stale += [str(p) for p in committed if p not in fresh]
    if stale:
        print("generated code is stale; run: python scripts/generate_protos.py", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print(f"generated code is up to date ({len(fresh)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    options = parser.parse_args()
    if options.check:
        return check()
    shutil.rmtree(ROOT / "clamor", ignore_errors=True)
    files = generate(ROOT)
    print(f"wrote {len(files)} files under {ROOT / 'clamor'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
