"""The text of a fetched body: by the charset it declares, the source's default, or detection.

Chinese, Japanese and Russian sites still serve GB18030/GBK, Shift_JIS/cp932, EUC-JP,
Windows-1251 and KOI8-R, often without saying so, or saying so in only one of the places a
body may. The candidates are tried in the order a browser trusts them: a byte-order mark, the
``Content-Type`` charset, what the document says of itself (an XML declaration, an HTML
``<meta>``, for documents only: a JSON string may hold such text), the source's own default
(5ch boards are cp932 by convention), then UTF-8. The first that decodes the whole body
without error wins, so a wrong label (a header saying UTF-8 over a GBK feed) falls through to
the next. If none does, the first label decodes with replacement characters (one bad byte must
not lose a whole page of posts); with no label at all, charset-normalizer detects the charset.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

from charset_normalizer import from_bytes

Origin = Literal["bom", "header", "xml", "meta", "default", "utf-8", "detected"]

_BOMS = (
    # UTF-32 first: its little-endian mark begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Labels read as the superset that sites really write, as browsers do (WHATWG Encoding): a page
# labelled GB2312 or Shift_JIS uses the vendor extensions more often than not.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
}
# Browsers look for a <meta> charset within the first 1024 bytes; an XML declaration opens the document.
_PRESCAN_BYTES = 1024
_LABEL = rb"([A-Za-z0-9][A-Za-z0-9._:-]{0,39})"
_XML_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?\sencoding\s*=\s*[\"']" + _LABEL + rb"[\"']")
_HTML_META = re.compile(rb"<meta\s[^>]*?charset\s*=\s*[\"']?\s*" + _LABEL, re.IGNORECASE)
_DOCUMENT_DECLARATIONS: tuple[tuple[re.Pattern[bytes], Origin], ...] = ((_XML_DECLARATION, "xml"), (_HTML_META, "meta"))
_XML_ENCODING_ATTRIBUTE = re.compile(r"^(\s*<\?xml[^>]*?\sencoding\s*=\s*)([\"'])[^\"']*\2")


@dataclass(frozen=True)
class Decoded:
    text: str
    # Python's name for the codec used, and where the label came from.
    charset: str
    origin: Origin


def codec_name(label: str) -> str | None:
    """Python's codec for a charset label, read as its superset (see ``_SUPERSETS``); None if unknown."""
    cleaned = label.strip().strip("\"'").lower()
    try:
        return codecs.lookup(_SUPERSETS.get(cleaned, cleaned)).name
    except LookupError:
        return None


def header_charset(content_type: str) -> str:
    """The ``charset`` parameter of a Content-Type value, as written; '' when there is none."""
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def decode_body(body: bytes, *, content_type: str = "", document: bool = False, default: str = "") -> Decoded:
    """The body's text; ``document`` for XML and HTML, whose own declarations count; ``default``: the
    charset the source uses when nothing is declared."""
    candidates = list(_declared(body, content_type, document=document))
    if default and (name := codec_name(default)) is not None:
        candidates.append((name, "default"))
    for charset, origin in [*candidates, ("utf-8", "utf-8")]:
        try:
            return Decoded(body.decode(charset), charset, origin)
        except UnicodeDecodeError:
            continue
    if candidates:
        charset, origin = candidates[0]
        return Decoded(body.decode(charset, errors="replace"), charset, origin)
    detected = from_bytes(body).best()
    name = codec_name(detected.encoding) if detected is not None else None
    if name is None:
        return Decoded(body.decode("utf-8", errors="replace"), "utf-8", "utf-8")
    return Decoded(body.decode(name, errors="replace"), name, "detected")


def _declared(body: bytes, content_type: str, *, document: bool) -> list[tuple[str, Origin]]:
    found: list[tuple[str, Origin]] = []
    for mark, charset in _BOMS:
        if body.startswith(mark):
            # A byte-order mark is certain: no label can overrule it.
            return [(charset, "bom")]
    if (name := codec_name(header_charset(content_type))) is not None:
        found.append((name, "header"))
    if document:
        head = body[:_PRESCAN_BYTES]
        for pattern, origin in _DOCUMENT_DECLARATIONS:
            match = pattern.search(head)
            if match and (name := codec_name(match.group(1).decode("ascii"))) is not None:
                found.append((name, origin))
    return found


def as_utf8_xml(text: str) -> bytes:
    """An XML document's text as UTF-8 bytes whose declaration says so, for parsers that read bytes."""
    return _XML_ENCODING_ATTRIBUTE.sub(r"\1\2utf-8\2", text.removeprefix("\ufeff"), count=1).encode("utf-8")
