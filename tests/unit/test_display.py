"""display.safe: untrusted text printed as one line, never driving a terminal."""

from __future__ import annotations

from customer_ratings.display import safe


def test_control_characters_are_escaped() -> None:
    assert safe("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert safe("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert safe("\x00\x07\x7f\x85\x9b") == "\\x00\\x07\\x7f\\x85\\x9b"
    assert safe("line\u2028para\u2029") == "line\\u2028para\\u2029"


def test_printable_text_is_unchanged() -> None:
    for text in ("Customer Rating Agency A Inc_20250513.csv", "Société é ü 中文", "back\\slash", ""):
        assert safe(text) == text


def test_undecodable_bytes_of_a_file_name_show_as_hex() -> None:
    assert safe(b"a\xffb".decode("utf-8", "surrogateescape")) == "a\\xffb"


def test_limit_cuts_the_original_text_before_escaping() -> None:
    assert safe("x" * 50, 40) == "x" * 40 + "..."
    assert safe("abc", 40) == "abc"
    assert safe("\n" * 50, 3) == "\\n\\n\\n..."
    assert "\n" not in safe("a\nb" * 100, 40)
