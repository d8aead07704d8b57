"""Regenerate the committed gRPC/protobuf code under skerry/api/v1.

The only code generator in the project. CI runs it and fails if the
committed files differ (`scripts/gen_protos.py --check`). grpcio-tools is
pinned in pyproject.toml (extra `dev`) so every run emits the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = pathlib.Path("skerry/api/v1")
HEADER_INIT = '"""Generated gRPC/protobuf code. Do not edit: run scripts/gen_protos.py."""\n'


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    protos = sorted((PROTO_ROOT / OUT_PACKAGE).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / OUT_PACKAGE}")
    (out_root / OUT_PACKAGE).mkdir(parents=True, exist_ok=True)
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / OUT_PACKAGE / "__init__.py").write_text(HEADER_INIT)
    return sorted(p.relative_to(out_root) for p in (out_root / OUT_PACKAGE).iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = pathlib.Path(tmp)
        files = generate(tmp_root)
        committed = {p.relative_to(ROOT) for p in (ROOT / OUT_PACKAGE).iterdir() if p.is_file()}
        if opts.check:
            stale = [str(f) for f in files if not (ROOT / f).exists() or not filecmp.cmp(tmp_root / f, ROOT / f, shallow=False)]
            extra = sorted(str(f) for f in committed - set(files))
            if stale or extra:
                print("generated code is stale; run scripts/gen_protos.py:", *stale, *extra, file=sys.stderr)
                return 1
            print(f"generated code up to date ({len(files)} files)")
            return 0
        for f in committed - set(files):
            (ROOT / f).unlink()
        for f in files:
            shutil.copyfile(tmp_root / f, ROOT / f)
        print(f"wrote {len(files)} files under {OUT_PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
