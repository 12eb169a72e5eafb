"""The MiniLM distillation corpus: English prose that ships with every Python 3.11.

Sources (read offline, never imported or executed)
    ``pydoc``: the help topics of the Python reference (:mod:`pydoc_data.topics`, the text of
    ``help("topics")``), and ``docstrings``: the module, class and function docstrings of the
    standard library, read with :mod:`ast` from the ``.py`` files under
    ``sysconfig.get_paths()["stdlib"]`` (test suites, ``idlelib``, ``lib2to3``, ``turtledemo``
    and ``site-packages`` excluded), files in sorted order.

Sentence splitter (:func:`split_sentences`, deterministic)
    Text is cut into paragraphs at blank lines; a paragraph is dropped when it looks like code
    or a table (doctest prompts, ``::`` blocks, box drawing, lines indented deeper than the
    paragraph's first line by 4+ columns are read as separate blocks). A paragraph's lines are
    joined and cut after ``.``, ``!`` or ``?`` followed by a space and an upper-case letter.
    A sentence is kept when it has :data:`MIN_WORDS`..:data:`MAX_WORDS` words, starts with an
    upper-case letter, ends with ``.``, is at least 80% letters and spaces, has no code
    punctuation (``=``, ``{``, ``}``, ``>>>``, ``__``, ``()``), and tokenizes to at most
    :data:`MAX_TOKENS` tokens (specials included; so no sentence is ever truncated, neither in
    distillation nor on the STA, whose ``ulx3s_board`` preset takes 128). Duplicates (after
    case-folding and collapsing white space) are kept once, first occurrence first.

Split (:func:`corpus_split`, deterministic and order-free)
    A sentence is *held out* when the first 8 hex digits of the SHA-256 of its normalised text
    are below :data:`HELD_OUT_PERMILLE` / 1000 of the range, else it is *train*. The split
    depends only on the sentence itself, so the two sets are disjoint by construction and a
    Python patch release that edits a few docstrings moves only those sentences.
    :func:`corpus_fingerprint` (count + SHA-256 of both lists) is recorded with every result
    and in the shipped models' provenance, so a different corpus is visible.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import pathlib
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MIN_WORDS", "MAX_WORDS", "MAX_TOKENS", "HELD_OUT_PERMILLE", "split_sentences",
           "pydoc_texts", "docstring_texts", "corpus_sentences", "is_held_out", "corpus_split",
           "CorpusSplit", "corpus_fingerprint"]

MIN_WORDS = 6
MAX_WORDS = 40
#: Longest sentence kept, in MiniLM tokens (``[CLS]`` and ``[SEP]`` included).
MAX_TOKENS = 64
#: Share of the sentences held out for evaluation, in thousandths.
HELD_OUT_PERMILLE = 100

_EXCLUDED_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages",
                  "__pycache__", "ensurepip", "dist-packages"}
_CODE = re.compile(r"=|\{|\}|>>>|__|\(\)|\\|#|\$|\|")
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_BOX = re.compile(r"^[\s+\-=|*~^]+$")


def _paragraphs(text: str) -> Iterator[str]:
    """Prose paragraphs of ``text`` (blank-line separated; code-like blocks dropped)."""
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [ln.rstrip() for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        if any(ln.lstrip().startswith((">>>", "...", "$ ", "%")) for ln in lines):
            continue
        if any(_BOX.match(ln) for ln in lines) or lines[-1].endswith("::"):
            continue
        base = len(lines[0]) - len(lines[0].lstrip())
        chunk: list[str] = []
        for ln in lines:                      # deeper-indented lines start a separate block
            indent = len(ln) - len(ln.lstrip())
            if indent >= base + 4 and chunk:
                yield " ".join(chunk)
                chunk = []
            chunk.append(ln.strip())
        if chunk:
            yield " ".join(chunk)


def _keep(sentence: str) -> bool:
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not sentence[0].isupper() or not sentence.endswith(".") or sentence.endswith(".."):
        return False
    if _CODE.search(sentence):
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters >= 0.8 * len(sentence)


def split_sentences(text: str) -> list[str]:
    """The prose sentences of ``text`` that pass the filters (see the module docstring),
    before the token-length filter and de-duplication."""
    out = []
    for para in _paragraphs(text):
        para = re.sub(r"\s+", " ", para).strip()
        out += [s.strip() for s in _SENT_END.split(para) if _keep(s.strip())]
    return out


def pydoc_texts() -> list[tuple[str, str]]:
    """``(source, text)`` of every :mod:`pydoc_data.topics` topic, sorted by name."""
    from pydoc_data.topics import topics
    return [(f"pydoc:{name}", topics[name]) for name in sorted(topics)]


def _stdlib_files() -> list[pathlib.Path]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _EXCLUDED_DIRS or part.startswith("test") for part in rel.parts[:-1]):
            continue
        if rel.name.startswith("test_"):
            continue
        files.append(path)
    return files


def docstring_texts() -> list[tuple[str, str]]:
    """``(source, docstring)`` of the standard library's modules, classes and functions."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    out.append((f"stdlib:{rel}", doc))
    return out


def _normal(sentence: str) -> str:
    return " ".join(sentence.casefold().split())


@functools.cache
def corpus_sentences() -> tuple[str, ...]:
    """Every corpus sentence (pydoc topics first, then the docstrings), de-duplicated and
    filtered to :data:`MAX_TOKENS` tokens."""
    from nmaccel.model.minilm import get_default_tokenizer, tokenize
    seen, out = set(), []
    for _, text in pydoc_texts() + docstring_texts():
        for s in split_sentences(text):
            key = _normal(s)
            if key not in seen:
                seen.add(key)
                out.append(s)
    lengths = [len(ids) for ids in tokenize(out, get_default_tokenizer(), max_len=10**6)]
    return tuple(s for s, n in zip(out, lengths) if n <= MAX_TOKENS)


def is_held_out(sentence: str, permille: int = HELD_OUT_PERMILLE) -> bool:
    """Whether ``sentence`` belongs to the held-out evaluation set (SHA-256 of its normalised
    text below ``permille`` thousandths of the range)."""
    digest = int(hashlib.sha256(_normal(sentence).encode("utf-8")).hexdigest()[:8], 16)
    return digest * 1000 < permille * 16 ** 8


@dataclass(frozen=True)
class CorpusSplit:
    """The corpus split: ``train`` and ``held_out`` sentences (disjoint), in corpus order."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]

    def fingerprint(self) -> dict:
        return corpus_fingerprint(self)


@functools.cache
def corpus_split(permille: int = HELD_OUT_PERMILLE) -> CorpusSplit:
    """Train / held-out split of :func:`corpus_sentences` (see the module docstring)."""
    sentences = corpus_sentences()
    held = tuple(s for s in sentences if is_held_out(s, permille))
    held_set = set(held)
    return CorpusSplit(train=tuple(s for s in sentences if s not in held_set), held_out=held)


def corpus_fingerprint(split: CorpusSplit) -> dict:
    """Counts and SHA-256 of both sets (identifies the exact corpus a result used)."""
    def digest(items) -> str:
        return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]
    return {"source": "pydoc_data.topics + Python standard-library docstrings "
                      "(nmaccel.model.corpus)",
            "train": len(split.train), "held_out": len(split.held_out),
            "train_sha256": digest(split.train), "held_out_sha256": digest(split.held_out),
            "held_out_permille": HELD_OUT_PERMILLE, "max_tokens": MAX_TOKENS}
