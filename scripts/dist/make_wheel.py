#!/usr/bin/env python3
"""Writes a binary-only wheel that installs one executable as a command, the way ruff and uv ship theirs.

The executable goes to `{name}-{version}.data/scripts/`, which installers (pip, uv, pipx) copy into the
environment's bin directory; the wheel holds no Python code. The layout follows the binary wheel format
(PEP 427, PEP 491): `.dist-info/` with METADATA, WHEEL and RECORD (sha256 of every other file, urlsafe
base64 without padding). Entries are sorted and dated from `--epoch`, so the same inputs give the same bytes.

Standard library only, so it runs wherever python3 does.
"""

import argparse
import base64
import hashlib
import io
import os
import re
import sys
import time
import zipfile


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def zip_date(epoch: int) -> tuple:
    # ZIP dates start in 1980 and have no time zone; UTC keeps them the same everywhere.
    t = time.gmtime(max(epoch, 315532800))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def metadata(name: str, version: str, summary: str, license_files: list, description: str) -> str:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
        "Classifier: Environment :: Console",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Programming Language :: Swift",
    ]
    lines += [f"License-File: {os.path.basename(path)}" for path in license_files]
    lines += ["Description-Content-Type: text/markdown", "", description]
    return "\n".join(lines) + "\n"


def wheel_file(tag: str) -> str:
    return "\n".join(
        [
            "Wheel-Version: 1.0",
            "Generator: nvfp4 scripts/dist/make_wheel.py",
            # Platform-specific: installers must put it in platlib and check the tag.
            "Root-Is-Purelib: false",
            f"Tag: {tag}",
        ]
    ) + "\n"


def build(args: argparse.Namespace) -> str:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", args.version):
        sys.exit(f"make_wheel.py: version {args.version!r} is not N.N.N")
    if not re.fullmatch(r"py3-none-[a-z0-9_]+", args.tag):
        sys.exit(f"make_wheel.py: tag {args.tag!r} is not py3-none-PLATFORM")
    with open(args.binary, "rb") as f:
        binary = f.read()
    if not binary.startswith(b"\x7fELF"):
        sys.exit(f"make_wheel.py: {args.binary}: not an ELF executable")
    with open(args.description, encoding="utf-8") as f:
        description = f.read()

    dist_info = f"{args.name}-{args.version}.dist-info"
    data_scripts = f"{args.name}-{args.version}.data/scripts"
    # (archive path, bytes, unix mode)
    files = [(f"{data_scripts}/{args.command}", binary, 0o755)]
    for path in args.license_file:
        with open(path, "rb") as f:
            files.append((f"{dist_info}/licenses/{os.path.basename(path)}", f.read(), 0o644))
    files.append((f"{dist_info}/METADATA",
                  metadata(args.name, args.version, args.summary, args.license_file, description).encode(), 0o644))
    files.append((f"{dist_info}/WHEEL", wheel_file(args.tag).encode(), 0o644))

    record = io.StringIO()
    for path, data, _ in files:
        record.write(f"{path},{record_hash(data)},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    files.append((f"{dist_info}/RECORD", record.getvalue().encode(), 0o644))

    out_name = f"{args.name}-{args.version}-{args.tag}.whl"
    out_path = os.path.join(args.out_dir, out_name)
    tmp_path = out_path + ".tmp"
    date = zip_date(args.epoch)
    with zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as whl:
        for path, data, mode in files:
            info = zipfile.ZipInfo(path, date_time=date)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so installers honour the mode bits below
            info.external_attr = (0o100000 | mode) << 16
            whl.writestr(info, data)
    os.replace(tmp_path, out_path)
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--tag", required=True, help="e.g. py3-none-manylinux_2_35_x86_64")
    parser.add_argument("--binary", required=True, help="the executable to install")
    parser.add_argument("--command", required=True, help="its name on PATH")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--description", required=True, help="markdown file for the long description")
    parser.add_argument("--license-file", action="append", default=[])
    parser.add_argument("--epoch", type=int, default=315532800, help="timestamp for every entry")
    parser.add_argument("--out-dir", required=True)
    print(build(parser.parse_args()))


if __name__ == "__main__":
    main()
