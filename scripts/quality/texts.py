"""Offline English text for the quality scripts (no network needed).

Two disjoint sources, so that statistics are never collected on the evaluation text:
- evaluation: the files of /usr/share/common-licenses (on every Debian system), concatenated in
  sorted file-name order, each followed by a blank line;
- calibration: the docstrings of Python standard-library modules, classes and functions (first the
  modules of CALIBRATION_MODULES, then every other importable standard-library module in name
  order, then the Python reference topics of pydoc_data), less every sentence that shares a run of
  8 words with the evaluation text (a few docstrings quote a license disclaimer). About 160,000
  SmolLM2 tokens; the first 53,000 are those of CALIBRATION_MODULES, so a run that takes fewer
  tokens than that sees the same text as before the other sources were added.
"""
import contextlib
import importlib
import inspect
import io
import os
import re
import sys

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
# Standard-library modules never imported for text: side effects (a browser, printing, a GUI) or no prose.
NOT_IMPORTED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc_data", "lib2to3",
                "ensurepip", "venv"}
SHARED_RUN = 8  # words: a calibration sentence with a run this long from the evaluation text is dropped


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
    """Up to `count` distinct sentences of 6–60 words from standard-library docstrings and reference
    topics, none sharing a run of SHARED_RUN words with the evaluation text."""
    others = [m for m in sorted(sys.stdlib_module_names)
              if not m.startswith("_") and m not in NOT_IMPORTED and m not in CALIBRATION_MODULES]
    docs = [_docstrings(name) for name in CALIBRATION_MODULES + others]
    from pydoc_data.topics import topics
    docs += [topics[key] for key in sorted(topics)]
    evaluation = _word_runs(evaluation_text())
    return [s for s in _sentences("\n\n".join(docs), 10 ** 9) if not (_word_runs(s) & evaluation)][:count]


def _docstrings(name: str) -> str:
    """The docstrings of a module and its classes and functions ("" if it does not import)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - a module that does not import here gives no text
        return ""
    docs = [inspect.getdoc(module) or ""]
    for _, member in sorted(inspect.getmembers(module), key=lambda kv: kv[0]):
        if inspect.isclass(member) or inspect.isfunction(member):
            docs.append(inspect.getdoc(member) or "")
    return "\n\n".join(docs)


def _word_runs(text: str) -> set:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + SHARED_RUN]) for i in range(len(words) - SHARED_RUN + 1)}


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
