"""``is_email`` folds iRedAPD's two tests (forbidden characters, then the prefix regex) into one
regex: it must answer exactly as the two-step original on any text."""

from __future__ import annotations

import random
import re

import pytest

from apd.address import is_email

_FORBIDDEN = set("~!$%^*() ")
_PATTERN = re.compile(r"[\w\-\#][\w\-\.\+\=\/\&\#]*@[\w\-][\w\-\.]*\.[a-zA-Z0-9\-]{2,15}", re.IGNORECASE)


def reference(value: str) -> bool:
    """iRedAPD's is_email, step by step."""
    text = value.strip()
    if not text or _FORBIDDEN.intersection(text):
        return False
    return _PATTERN.match(text) is not None


ALPHABET = "ab1_-.#+=/&@~!$%^*() \t\r\x0b\x00éİſ\u212aKZ."


@pytest.mark.parametrize("seed", range(4))
def test_answers_like_the_two_step_original(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.5:
            text += "@ex.co" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))
        assert is_email(text) == reference(text), repr(text)


@pytest.mark.parametrize(
    "text",
    [
        "user@example.com",
        " user@example.com ",
        "user@example.com>",
        "user@localhost",
        "us er@example.com",
        "user@example.com x",
        "user@example.c(m",
        "",
        " ",
        "@example.com",
        "user@.com",
        "u@e.ſſ",
        "u@e.c\u212a",
    ],
)
def test_known_cases(text: str) -> None:
    assert is_email(text) == reference(text)
