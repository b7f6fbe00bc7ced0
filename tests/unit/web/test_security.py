"""The web edge's pure parts: JSON nesting counted without parsing, Host names, the allow-list."""
from __future__ import annotations

import json

import pytest

from atlas.web.common import nesting
from atlas.web.security import allowed_hosts, host_name


@pytest.mark.parametrize("doc", [{}, [], 1, "text", {"a": [1, {"b": [[]]}]}, [[[[[[[[[[]]]]]]]]]],
                                 {"s": "[[[{{{", "t": "\\\"[", "u": ["\"]]"]}])
def test_nesting_counts_what_a_parser_would_see(doc):
    def depth(value) -> int:
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    assert nesting(json.dumps(doc).encode()) == depth(doc)


def test_nesting_reads_a_deep_document_without_recursion():
    assert nesting(b"[" * 100_000 + b"]" * 100_000) == 100_000
    assert nesting(b'"' + b"[" * 100_000 + b'"') == 0


def test_nesting_skips_an_unclosed_string_in_one_pass():
    # A body of escaped quotes with no closing one made the string pattern backtrack from every quote:
    # 8 s of the event loop for 64 KiB (the review of issue 14). Unclosed, the string runs to the end.
    assert nesting(b'"' + b'\\"' * 32_000) == 0
    assert nesting(b'[["' + b'\\"[' * 20_000) == 2


@pytest.mark.parametrize("header, name", [("127.0.0.1:8080", "127.0.0.1"), ("LocalHost", "localhost"),
                                          ("[::1]:8080", "::1"), ("[::1]", "::1"), ("example.com:443", "example.com"),
                                          ("", "")])
def test_host_name_drops_the_port_and_the_case(header, name):
    assert host_name(header) == name


def test_loopback_and_the_bind_address_are_allowed_and_nothing_else_by_default():
    assert {"127.0.0.1", "localhost", "::1"} <= allowed_hosts()
    assert "attacker.example" not in allowed_hosts() and "" not in allowed_hosts()
