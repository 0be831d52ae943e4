"""Opening a CSV file whatever encoding the spreadsheet wrote it in.

Why: Chinese Excel saves "CSV" in the system code page (GBK, i.e. GB18030's
older subset), not UTF-8; reading such a file as UTF-8 used to crash the
import with a traceback. UTF-8 (with or without Excel's BOM) is tried first
because it is unambiguous: a non-ASCII text that decodes as UTF-8 almost
never is anything else. Otherwise charset-normalizer guesses from a sample;
any Chinese guess (GB2312, GBK, HZ) is read as GB18030, the superset that
decodes all of them; when GB18030 is among the encodings that fit (short
samples fit Big5, EUC-KR and Shift-JIS as well) it is chosen, as this is what
Chinese Excel writes; a Big5 file needs ``--encoding big5``.
``encoding=`` overrides the guess.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLE_BYTES", "CsvEncodingError", "Detected", "detect_encoding"]

SAMPLE_BYTES = 1 << 20
_CHINESE = {"gb2312", "gbk", "gb18030", "hz", "hz_gb_2312", "cp936", "euc_cn", "iso2022_cn"}


class CsvEncodingError(ValueError):
    """The file's encoding cannot be told or is not one Python knows."""


@dataclass(frozen=True)
class Detected:
    """The encoding to read with (a Python codec name) and whether it was guessed."""

    encoding: str
    guessed: bool

    @property
    def label(self) -> str:
        return {"utf-8-sig": "UTF-8", "gb18030": "GB18030/GBK"}.get(self.encoding, self.encoding)


def detect_encoding(path: str | Path, encoding: str | None = None) -> Detected:
    """The encoding to open ``path`` with.

    Raises:
        CsvEncodingError: ``encoding`` is unknown, or nothing fits the file.
    """
    if encoding:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise CsvEncodingError(f"unknown encoding `{encoding}` (use utf-8 or gb18030)") from None
        return Detected("utf-8-sig" if name == "utf-8" else name, False)
    with open(path, "rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
        more = bool(fh.read(1))
    if more and b"\n" in sample:
        sample = sample[:sample.rindex(b"\n") + 1]  # never cut a character in two (\n is no trail byte)
    try:
        sample.decode("utf-8")
        return Detected("utf-8-sig", False)
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    # A short Chinese sample fits GBK, Big5, EUC-KR and Shift-JIS alike; GB18030 is what Chinese Excel writes.
    if any(_CHINESE & {c.replace("-", "_") for c in m.could_be_from_charset} for m in matches):
        return Detected("gb18030", True)
    best = matches[0] if matches else None
    if best is None:
        raise CsvEncodingError("cannot tell the file's encoding; save it as UTF-8 (Excel: "
                               "“CSV UTF-8 (逗号分隔)”) or pass --encoding gb18030")
    name = codecs.lookup(best.encoding).name
    if name.replace("-", "_") in _CHINESE or best.encoding in _CHINESE:
        name = "gb18030"
    return Detected(name, True)
