"""GB 32100-2015 unified social credit codes: the check character, and every way to be wrong."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fanli.customers.credit_code import ALPHABET, check_character, credit_code_problem


def test_published_codes_are_valid() -> None:
    # Codes printed on public business licences (a Fuzhou company; a Beijing company).
    assert credit_code_problem("91350100M000100Y43") is None
    assert credit_code_problem("91110000600037341L") is None


def test_each_problem_is_named() -> None:
    def problem(code: str) -> str:
        return str(credit_code_problem(code))

    assert problem("9135010") == "a unified social credit code has 18 characters, not 7"
    assert problem("91350100I000100Y43") == "character 9 ('I') is not allowed in a credit code"
    assert problem("91350100M000100Y44") == "check character is '4', GB 32100-2015 requires '3'"


body = st.text(alphabet=ALPHABET, min_size=17, max_size=17)


@given(body)
def test_the_computed_check_character_validates(first17: str) -> None:
    assert credit_code_problem(first17 + check_character(first17)) is None


@given(body, st.integers(0, 16), st.sampled_from(ALPHABET))
def test_any_single_character_change_is_caught(first17: str, position: int, other: str) -> None:
    code = first17 + check_character(first17)
    if other == code[position]:
        return
    changed = code[:position] + other + code[position + 1 :]
    # Weights are powers of 3 mod 31 (never 0) and 31 is prime: one changed character always
    # changes the weighted sum mod 31.
    assert credit_code_problem(changed) is not None
