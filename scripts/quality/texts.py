"""Offline English text for the quality scripts (no network needed).

Two disjoint sources, so that statistics are never collected on the evaluation text:
- evaluation: the files of /usr/share/common-licenses (on every Debian system), concatenated in
  sorted file-name order, each followed by a blank line;
- calibration: the docstrings of Python standard-library modules, classes and functions.
"""
import importlib
import inspect
import os
import re

LICENSES = "/usr/share/common-licenses"

# Pure-Python modules with plenty of prose docstrings; importing them has no side effects.
CALIBRATION_MODULES = [
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions",
    "functools", "gettext", "glob", "gzip", "heapq", "hmac", "html", "http.client", "imaplib", "inspect",
    "ipaddress", "json", "logging", "mailbox", "numbers", "operator", "optparse", "pathlib", "pickle", "pprint",
    "queue", "random", "shlex", "shutil", "smtplib", "socket", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "typing", "unittest", "urllib.parse",
    "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom", "zipfile",
]


def evaluation_text() -> str:
    """The license files as one string."""
    parts = []
    for name in sorted(os.listdir(LICENSES)):
        path = os.path.join(LICENSES, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                parts.append(f.read())
    return "\n\n".join(parts)


def evaluation_sentences(count: int) -> list[str]:
    """Up to `count` distinct sentences of 6–60 words from the license files."""
    return _sentences(evaluation_text(), count)


def calibration_sentences(count: int) -> list[str]:
    """Up to `count` distinct sentences of 6–60 words from standard-library docstrings."""
    docs = []
    for name in CALIBRATION_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        docs.append(inspect.getdoc(module) or "")
        for _, member in sorted(inspect.getmembers(module), key=lambda kv: kv[0]):
            if inspect.isclass(member) or inspect.isfunction(member):
                docs.append(inspect.getdoc(member) or "")
    return _sentences("\n\n".join(docs), count)


def _sentences(text: str, count: int) -> list[str]:
    text = re.sub(r"\s+", " ", text)
    seen, out = set(), []
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
        s = s.strip()
        words = s.split()
        if 6 <= len(words) <= 60 and s not in seen and sum(c.isalpha() for c in s) > 0.6 * len(s):
            seen.add(s)
            out.append(s)
            if len(out) >= count:
                break
    return out
