"""decode_body: which label wins, what a wrong or unknown one does, and the UTF-8 hand-over for XML."""

from __future__ import annotations

import codecs

from services.listener.sources.charset import as_utf8_xml, codec_name, decode_body, header_charset

RU = "Жалоба на доставку: посылка пришла пустой, поддержка молчит."


def test_html_meta_charset_is_read_for_documents() -> None:
    body = f'<html><head><meta charset="windows-1251"></head><body>{RU}</body></html>'.encode("cp1251")

    decoded = decode_body(body, content_type="text/html", document=True)

    assert (decoded.charset, decoded.origin) == ("cp1251", "meta")
    assert RU in decoded.text


def test_http_equiv_meta_charset_is_read_for_documents() -> None:
    head = '<meta http-equiv="Content-Type" content="text/html; charset=KOI8-R">'
    body = f"<html><head>{head}</head><body>{RU}</body></html>".encode("koi8-r")

    assert decode_body(body, document=True).charset == "koi8-r"


def test_meta_in_json_text_is_not_a_declaration() -> None:
    body = '{"text": "<meta charset=\\"koi8-r\\"> пишет в поддержку"}'.encode()

    decoded = decode_body(body, content_type="application/json")

    assert (decoded.charset, decoded.origin) == ("utf-8", "utf-8")


def test_byte_order_mark_overrules_the_header() -> None:
    body = codecs.BOM_UTF16_LE + RU.encode("utf-16-le")

    decoded = decode_body(body, content_type="text/plain; charset=windows-1251")

    assert (decoded.text, decoded.origin) == (RU, "bom")


def test_unknown_label_falls_through_to_the_next_candidate() -> None:
    decoded = decode_body(RU.encode("cp1251"), content_type="text/plain; charset=x-martian", default="cp1251")

    assert (decoded.text, decoded.origin) == (RU, "default")


def test_default_is_used_when_nothing_is_declared() -> None:
    text = "返金してください"

    assert decode_body(text.encode("cp932"), default="cp932") == decode_body(text.encode("cp932"), default="Shift_JIS")
    assert decode_body(text.encode("cp932"), default="cp932").text == text


def test_one_bad_byte_is_replaced_rather_than_losing_the_body() -> None:
    # 0x81 begins a two-byte character; a space cannot end one.
    body = "配達が遅い".encode("cp932") + b"\x81 " + "返金して".encode("cp932")

    decoded = decode_body(body, content_type="text/plain; charset=Shift_JIS")

    assert (decoded.text, decoded.charset) == ("配達が遅い\ufffd 返金して", "cp932")


def test_labels_are_read_as_their_supersets() -> None:
    assert codec_name("GB2312") == "gb18030"
    assert codec_name("Windows-31J") == "cp932"
    assert codec_name('"Shift_JIS"') == "cp932"
    assert codec_name("x-unknown") is None


def test_header_charset_is_the_parameter_as_written() -> None:
    assert header_charset('application/xml; charset="EUC-JP"') == "EUC-JP"
    assert header_charset("application/xml") == ""


def test_xml_declaration_is_rewritten_to_say_utf8() -> None:
    document = "\ufeff<?xml version='1.0' encoding='GB2312'?><rss/>"

    assert as_utf8_xml(document) == b"<?xml version='1.0' encoding='utf-8'?><rss/>"
