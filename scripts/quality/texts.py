"""Offline English text for the quality scripts (no network needed).

Disjoint sources, so that statistics are never collected on the evaluation text:
- evaluation: the files of /usr/share/common-licenses (on every Debian system), concatenated in
  sorted file-name order, each followed by a blank line;
- calibration: the docstrings of Python standard-library modules, classes and functions (first the
  modules of CALIBRATION_MODULES, then every other importable standard-library module in name
  order, then the Python reference topics of pydoc_data), less every sentence that shares a run of
  8 words with the evaluation text (a few docstrings quote a license disclaimer). About 160,000
  SmolLM2 tokens; the first 53,000 are those of CALIBRATION_MODULES, so a run that takes fewer
  tokens than that sees the same text as before the other sources were added;
- prose calibration (`calibration_sentences(count, "prose")`, about 700,000 SmolLM2 tokens):
  general English prose from three Debian packages (`apt-get install debian-handbook python3-doc
  fortunes`), one sentence from each in turn so that every slice mixes them: the Debian
  Administrator's Handbook (its paragraphs, without the contents page and legal notice), the
  Python tutorial, HOWTOs and FAQ (reStructuredText sources, code blocks left out), and the
  fortune files (quotations, literature, science; the law and disclaimer files are left out as
  too close to the evaluation text's domain). The same 8-word filter applies.
"""
import contextlib
import glob
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


def calibration_sentences(count: int, source: str = "docstrings") -> list[str]:
    """Up to `count` distinct sentences of 6–60 words from standard-library docstrings and reference
    topics (`source` "docstrings") or general English prose ("prose"), none sharing a run of
    SHARED_RUN words with the evaluation text."""
    if source == "prose":
        return _prose_sentences(count)
    if source != "docstrings":
        raise ValueError(f"unknown calibration source {source!r} (docstrings or prose)")
    others = [m for m in sorted(sys.stdlib_module_names)
              if not m.startswith("_") and m not in NOT_IMPORTED and m not in CALIBRATION_MODULES]
    docs = [_docstrings(name) for name in CALIBRATION_MODULES + others]
    from pydoc_data.topics import topics
    docs += [topics[key] for key in sorted(topics)]
    evaluation = _word_runs(evaluation_text())
    return [s for s in _sentences("\n\n".join(docs), 10 ** 9) if not (_word_runs(s) & evaluation)][:count]


HANDBOOK = "/usr/share/doc/debian-handbook/html/en-US"
# The reStructuredText sources of the python3-doc package (python3.11 on Debian 12; the newest there is).
PYTHON_DOC_SOURCES = (sorted(glob.glob("/usr/share/doc/python3.*/html/_sources"),
                             key=lambda p: [int(n) for n in re.findall(r"\d+", p)]) or ["/usr/share/doc/python3/html/_sources"])[-1]
FORTUNES = "/usr/share/games/fortunes"
FORTUNE_FILES_LEFT_OUT = {"law", "disclaimer", "ascii-art", "art", "translate-me"}


def _prose_sentences(count: int) -> list[str]:
    missing = [p for p in (HANDBOOK, PYTHON_DOC_SOURCES, FORTUNES) if not os.path.isdir(p)]
    if missing:
        raise SystemExit(f"prose calibration needs {', '.join(missing)}: "
                         "apt-get install debian-handbook python3-doc fortunes")
    evaluation = _word_runs(evaluation_text())
    streams = [_sentences(text, 10 ** 9) for text in (_handbook_text(), _python_doc_text(), _fortune_text())]
    out, seen = [], set()
    for i in range(max(len(s) for s in streams)):
        for stream in streams:
            if i < len(stream) and stream[i] not in seen and not (_word_runs(stream[i]) & evaluation):
                seen.add(stream[i])
                out.append(stream[i])
                if len(out) >= count:
                    return out
    return out


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _handbook_text() -> str:
    import html
    parts = []
    for name in sorted(os.listdir(HANDBOOK)):
        if name.endswith(".html") and name != "index.html":  # index.html: contents and the legal notice
            page = re.sub(r"(?s)<(pre|script|style)\b.*?</\1>", " ", _read(os.path.join(HANDBOOK, name)))
            for para in re.findall(r'(?s)<div class="para"[^>]*>(.*?)</div>', page):
                parts.append(html.unescape(re.sub(r"<[^>]+>", "", para)))
    return "\n\n".join(parts)


def _python_doc_text() -> str:
    parts = []
    for folder in ("tutorial", "howto", "faq"):
        root = os.path.join(PYTHON_DOC_SOURCES, folder)
        for name in sorted(os.listdir(root)):
            if not name.endswith(".txt"):
                continue
            kept, in_code = [], False
            for line in _read(os.path.join(root, name)).splitlines():
                if in_code and line.strip() and not line.startswith((" ", "\t")):
                    in_code = False
                if in_code or line.startswith((" ", "\t", "..", ">>>")) or re.match(r"^[=\-~^*#]{3,}$", line):
                    in_code = in_code or line.rstrip().endswith("::")
                    continue
                in_code = line.rstrip().endswith("::")
                kept.append(re.sub(r":\w+:`([^`]*)`", r"\1", line).replace("``", ""))
            parts.append("\n".join(kept))
    return "\n\n".join(parts)


def _fortune_text() -> str:
    parts = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or name in FORTUNE_FILES_LEFT_OUT or not os.path.isfile(path) or os.path.islink(path):
            continue
        parts += [re.sub(r"\s*--\s*[^\n]*$", "", f.strip()) for f in _read(path).split("\n%\n")]
    return "\n\n".join(parts)


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
