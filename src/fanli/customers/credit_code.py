"""The unified social credit code (统一社会信用代码) of GB 32100-2015 and its check character.

Eighteen characters from a 31-character alphabet (digits and capitals without I, O, S, V and
Z): registration authority, entity type, the six-digit administrative division, the nine-character
organisation code and one check character. The check character makes the weighted sum of all
eighteen values a multiple of 31, with weights 3**i mod 31.
"""

from __future__ import annotations

from typing import Final

from fanli.kit.errors import Said, said

ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE: Final = {character: value for value, character in enumerate(ALPHABET)}
_WEIGHTS: Final = tuple(pow(3, position, 31) for position in range(17))
LENGTH: Final = 18


def check_character(first17: str) -> str:
    """The check character for the first seventeen characters of a code."""
    total = sum(
        _VALUE[character] * weight for character, weight in zip(first17, _WEIGHTS, strict=True)
    )
    return ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> Said | None:
    """Why ``code`` is not a valid unified social credit code, or None when it is. The reason
    is English by ``str()``; a page says it in the reader's language."""
    if len(code) != LENGTH:
        return said(
            "a unified social credit code has {length} characters, not {found}",
            length=LENGTH,
            found=len(code),
        )
    for position, character in enumerate(code, start=1):
        if character not in _VALUE:
            return said(
                "character {position} ({character}) is not allowed in a credit code",
                position=position,
                character=repr(character),
            )
    expected = check_character(code[:17])
    if code[17] != expected:
        return said(
            "check character is {found}, GB 32100-2015 requires {expected}",
            found=repr(code[17]),
            expected=repr(expected),
        )
    return None


# Entity-type codes (the second character, under registration authority 9, 工商) that register
# a natural person's business: 个体工商户. They may trade, but a rebate is paid to legal entities.
_INDIVIDUAL_BUSINESS: Final = frozenset({"92"})


def legal_entity_problem(code: str | None) -> Said | None:
    """Why a customer with this credit code is not a registered legal entity, or None."""
    if not code:
        return said("it has no unified social credit code, so it is not a registered legal entity")
    problem = credit_code_problem(code)
    if problem:
        return problem
    if code[:2] in _INDIVIDUAL_BUSINESS:
        return said(
            "credit code {code} registers an individual business (个体工商户), not a legal entity",
            code=code,
        )
    return None
