"""The loopback SMTP server's plain-address shortcut gives what aiosmtpd's parse gives (bench/bench_delivery.py)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.servers.smtp import _SMTP, PLAIN_PATH

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"


def _both(arg: str, local_part_limit: int = 0) -> tuple[Any, Any]:
    def call(session: SMTP) -> Any:
        session.local_part_limit = local_part_limit
        try:
            return session._getaddr(arg)
        except Exception as exc:  # aiosmtpd itself fails on some inputs: the same failure is wanted
            return type(exc).__name__

    return call(_SMTP(object())), call(SMTP(object()))


@pytest.mark.parametrize(
    "arg",
    [
        "<jeanne@example.org>",
        "<jeanne.m@mail.example.org> SIZE=1520",
        "<a@b.c>  SIZE=12 BODY=8BITMIME",
        "<a@b.c>\tSIZE=1",
        "<a@b.c>x",
        "<o'brien+tag@example.org>",
        "<a@b.c> (comment) SIZE=1",  # not plain: the parser
        '<"quoted local"@example.org>',
        "<a..b@example.org>",
        "<a@[127.0.0.1]>",
        "<>",
        "jeanne@example.org",
        " <a@b.c>",
        "<a@b.c> SIZE=1 ",
        "<é@example.org>",
        "<a@b.c",
        "",
    ],
)
def test_the_shortcut_answers_as_the_parser(arg: str) -> None:
    ours, theirs = _both(arg)
    assert ours == theirs


def test_the_shortcut_is_taken_for_what_delivery_sends_and_keeps_the_local_part_limit() -> None:
    assert PLAIN_PATH.fullmatch("<p123@example.org> SIZE=1529")
    assert _both("<abcdef@example.org>", local_part_limit=3) == ((None, None), (None, None))


@settings(max_examples=500, deadline=None)
@given(
    local=st.lists(st.text(ATEXT, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
    domain=st.text(string.ascii_letters + string.digits + "-.", min_size=1, max_size=12),
    gap=st.sampled_from(["", " ", "  ", "\t", " (c) "]),
    params=st.sampled_from(["", "SIZE=12", "SIZE=1 BODY=8BITMIME", "x", "a=b  c", "BODY=7BIT ", "(x)", "é"]),
)
def test_the_shortcut_answers_as_the_parser_for_generated_paths(local: str, domain: str, gap: str, params: str) -> None:
    ours, theirs = _both(f"<{local}@{domain}>{gap}{params}")
    assert ours == theirs
