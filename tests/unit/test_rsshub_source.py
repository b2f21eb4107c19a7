"""The rsshub source's pure parts: which platform a route reads, and what a Cache-Control header asks."""

from __future__ import annotations

import httpx
import pytest

from services.listener.sources.rsshub import cache_max_age
from services.listener.sources.rsshub_routes import UNKNOWN, route_platform
from services.shared.outbound import HttpResponse


@pytest.mark.parametrize(
    ("route", "platform", "language"),
    [
        ("/weibo/keyword/云雀航空", "weibo", "zh"),
        ("/Weibo/user/1000000001", "weibo", "zh"),
        ("/sina/tousu", "heimao", "zh"),
        ("/baidu/tieba/forum/%E5%92%95%E5%92%95", "tieba", "zh"),
        ("/pikabu/community/delivery?limit=20", "pikabu", "ru"),
        ("/zhihu/question/600000001", "zhihu", "zh"),
    ],
)
def test_route_platform_reads_the_leading_segments(route: str, platform: str, language: str) -> None:
    entry = route_platform(route)

    assert (entry.platform, entry.language) == (platform, language)


@pytest.mark.parametrize("route", ["/sina/rollnews", "/baidu/search/x", "/", "/weibos/x", "/github/issue/a/b"])
def test_routes_outside_the_table_are_labelled_rsshub(route: str) -> None:
    assert route_platform(route) == UNKNOWN


def answered_with(cache_control: str | None) -> HttpResponse:
    headers = httpx.Headers({"Cache-Control": cache_control} if cache_control is not None else {})
    return HttpResponse(url="https://rsshub.example/weibo/keyword/x", status=200, headers=headers)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("public, max-age=300", 300.0),
        ("max-age=3600", 3600.0),
        ('public, MAX-AGE="120"', 120.0),
        ("public, s-maxage=900", None),
        ("no-cache, max-age=300", None),
        ("no-store", None),
        ("public", None),
        (None, None),
        ("max-age=99999999", 86_400.0),
    ],
)
def test_cache_max_age_reads_the_header(header: str | None, seconds: float | None) -> None:
    assert cache_max_age(answered_with(header)) == seconds
