"""Explanations: a result row told in words a sales manager and an auditor can check by hand.

``explain`` turns one ``ResultRow`` (with the sales lines that counted for it) into text: the lines,
the window, the band reached, the method's formula with the row's own numbers substituted, the
modifiers, the one rounding and the accrual. It re-derives nothing the row does not carry except
the formula's terms, which it computes exactly (``Fraction``) from the row's ``T``, ``P`` and ``B``
so that the reader sees the same arithmetic the engine did. ``summarize`` condenses a result table
per agreement; ``explain_results`` selects rows and fetches their lines for the interfaces.

All wording lives in ``TEXT`` (English and Simplified Chinese), nowhere else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fanli.agreements.terms import (
    AccrualMode,
    Agreement,
    Band,
    GrowthMode,
    Measure,
    RateForm,
    Split,
    TierMethod,
    TierScope,
)
from fanli.engine import columnar
from fanli.engine.results import ResultRow, rows_from_table
from fanli.kit.errors import InputError
from fanli.kit.money import ZERO, minor_unit, quantize_money

SHOWN_LINE_IDS = 5  # line ids listed by name before "..."

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Agreement {id} v{version}{name}: beneficiary {beneficiary}, period {index} "
        "{start} to {last}",
        "window_period": "Window: the period {start} to {last} ({kind}, scope: period)",
        "window_term": "Window: term to date, {start} to {last} ({kind} periods, scope: term)",
        "event": "Lines count by their {event} date",
        "lines_none": "Lines: none of this beneficiary's lines counted in this window",
        "lines_unavailable": "Lines: {count} counted (their detail is not shown here)",
        "lines_unavailable_term": "Lines: {count} counted in this period (the window's earlier "
        "periods count theirs in their own rows; the detail is not shown here)",
        "lines": "{role} lines: {count}, total {measure} {total}{returns}; {ids}",
        "returns": ", including {count} return/credit-note lines totalling {total}",
        "role_earning": "Earning",
        "role_target": "Target",
        "role_gate": "Gate",
        "role_baseline": "Baseline",
        "bases": "P (payment basis, {basis}) = {p}; T (tier basis, {tier}) = {t}",
        "pool": "Basis pooled over {members} (counterparty {counterparty})",
        "member_basis": "This member's own basis in the period: {basis} ({lines} lines)",
        "baseline": "B (baseline, {kind}) = {b}; growth = 100 x T / B = {growth}%",
        "baseline_none": "B (baseline, {kind}) = {b}: no growth band can be reached",
        "gate": "Gate: G ({measure}) = {g} against target {target}: {verdict}",
        "gate_met": "met",
        "gate_missed": "not met, nothing is earned",
        "minimum": "Minimum: T = {t} against minimum {minimum}: {verdict}",
        "minimum_met": "reached",
        "minimum_missed": "not reached, nothing is earned",
        "tier": "Tier reached: band {tier} [{lower}, {upper}) at {rate} (tier value {value})",
        "tier_none": "Tier reached: none (tier value {value}; the first band starts at {lower})",
        "formula": "{method}: {formula} = {raw}",
        "formula_none": "Raw rebate: 0 (nothing earned)",
        "rounding": "Rounding: {mode} to {quantum}: exact {raw} -> R = {rounded}",
        "rounding_mismatch": "Note: the row carries R = {row}, the formula above gives {mine}",
        "scope_term": "Scope term: this period earns R_i - R_(i-1) = {r} - {previous} = {e}",
        "scope_term_unknown": "Scope term: this period earns R_i minus the earlier periods' R",
        "cap_period": "Cap per period {cap}: {verdict}",
        "cap_term": "Cap per term {cap}: cumulative {cumulative}",
        "guarantee": "Guaranteed minimum {amount}{carry}",
        "carry": " (carried forward: the running total is guaranteed)",
        "binding": "applied",
        "not_binding": "not reached",
        "split": "Split pro rata: this member's share of the pool's rebate, by its own basis "
        "(largest remainder)",
        "rebate": "Rebate this period: {rebate}; cumulative (term to date): {cumulative}",
        "accrual_actual": "Accrual (actual): {accrual}, the cumulative rebate",
        "accrual_expected": "Accrual (expected, run-rate projection): {accrual} "
        "(actual cumulative {cumulative})",
    },
    "zh": {
        "title": "协议 {id} 第{version}版{name}：受益方 {beneficiary}，"
        "第 {index} 期 {start} 至 {last}",
        "window_period": "计算窗口：本期 {start} 至 {last}（{kind}，按期计算）",
        "window_term": "计算窗口：协议期初至今 {start} 至 {last}（{kind}，累计计算）",
        "event": "销售行按{event}日期计入",
        "lines_none": "销售行：本窗口内该受益方无计入的销售行",
        "lines_unavailable": "计入的销售行：{count} 行（此处不列明细）",
        "lines_unavailable_term": "本期计入的销售行：{count} 行（窗口内此前各期的销售行计入各期"
        "自己的结果；此处不列明细）",
        "lines": "{role}销售行：{count} 行，{measure}合计 {total}{returns}；{ids}",
        "returns": "，其中退货/红字 {count} 行，合计 {total}",
        "role_earning": "返利基数",
        "role_target": "目标",
        "role_gate": "门槛",
        "role_baseline": "基期",
        "bases": "P（返利基数，{basis}）= {p}；T（阶梯基数，{tier}）= {t}",
        "pool": "基数合并：{members}（签约方 {counterparty}）",
        "member_basis": "本成员本期自身基数：{basis}（{lines} 行）",
        "baseline": "B（基期，{kind}）= {b}；增长率 = 100 x T / B = {growth}%",
        "baseline_none": "B（基期，{kind}）= {b}：无法达到增长阶梯",
        "gate": "门槛：G（{measure}）= {g}，目标 {target}：{verdict}",
        "gate_met": "已达成",
        "gate_missed": "未达成，不计返利",
        "minimum": "起返额：T = {t}，起返额 {minimum}：{verdict}",
        "minimum_met": "已达到",
        "minimum_missed": "未达到，不计返利",
        "tier": "达到阶梯：第 {tier} 档 [{lower}, {upper})，费率 {rate}（阶梯值 {value}）",
        "tier_none": "达到阶梯：无（阶梯值 {value}；第一档起点 {lower}）",
        "formula": "{method}：{formula} = {raw}",
        "formula_none": "原始返利：0（未计返利）",
        "rounding": "舍入：{mode}，精确到 {quantum}：精确值 {raw} -> R = {rounded}",
        "rounding_mismatch": "注意：结果行 R = {row}，上式得 {mine}",
        "scope_term": "累计计算：本期返利 = R_i - R_(i-1) = {r} - {previous} = {e}",
        "scope_term_unknown": "累计计算：本期返利 = 累计 R 减去前期 R",
        "cap_period": "每期上限 {cap}：{verdict}",
        "cap_term": "协议期上限 {cap}：累计 {cumulative}",
        "guarantee": "保底返利 {amount}{carry}",
        "carry": "（结转：保底按累计计算）",
        "binding": "已触发",
        "not_binding": "未触发",
        "split": "按比例分配：本成员按自身基数分得合并返利（最大余数法）",
        "rebate": "本期返利：{rebate}；累计返利：{cumulative}",
        "accrual_actual": "计提（实际）：{accrual}，即累计返利",
        "accrual_expected": "计提（预计，按当前进度推算）：{accrual}（实际累计 {cumulative}）",
    },
}

_MEASURE_WORDS = {
    "en": {Measure.NET: "net amount", Measure.GROSS: "gross amount", Measure.QUANTITY: "quantity"},
    "zh": {Measure.NET: "不含税金额", Measure.GROSS: "含税金额", Measure.QUANTITY: "数量"},
}
# The terms' codes in the reader's words. English names the code in plain words (a reader of a
# statement does not know that "half_up" is a code); a code not listed is shown as written.
_CODES_EN = {
    "paid_invoice": "paid invoice",
    "whole_volume": "whole volume",
    "all_reached": "all bands reached",
    "whole_basis": "whole basis",
    "growth_only": "growth only",
    "prior_year": "prior year",
    "half_up": "half up",
    "half_even": "half to even",
}
_CODES_ZH = {
    "month": "按月",
    "quarter": "按季度",
    "half": "按半年",
    "year": "按年",
    "custom": "自定义期间",
    "order": "下单",
    "invoice": "开票",
    "paid_invoice": "回款",
    "whole_volume": "全额累进",
    "marginal": "超额累进",
    "rolling": "滚动累进",
    "all_reached": "各档叠加",
    "whole_basis": "全部基数",
    "growth_only": "仅增长部分",
    "prior_year": "上年同期",
    "fixed": "固定基期",
    "half_up": "四舍五入",
    "half_even": "银行家舍入",
}
_MEASURE_COLUMN = {
    Measure.NET: "net_amount",
    Measure.GROSS: "gross_amount",
    Measure.QUANTITY: "quantity",
}


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class _Words:
    language: str

    def __call__(self, key: str, **values: Any) -> str:
        # A day as the reader's language writes it (as the pages do): 2026年3月31日, Mar 31, 2026.
        values = {name: self.day(v) if isinstance(v, dt.date) else v for name, v in values.items()}
        return TEXT[self.language][key].format(**values)

    def day(self, value: dt.date) -> str:
        if self.language == "zh":
            return f"{value.year}年{value.month}月{value.day}日"
        return f"{_MONTHS[value.month - 1]} {value.day}, {value.year}"

    def money(self, value: Decimal, currency: str) -> str:
        """An amount with its currency: 882,487.47 CNY, in Chinese 882,487.47 元."""
        number = _number(value, minor_unit(currency))
        return (
            f"{number} 元"
            if self.language == "zh" and currency == "CNY"
            else f"{number} {currency}"
        )

    def measure(self, measure: Measure) -> str:
        return _MEASURE_WORDS[self.language][measure]

    def code(self, value: str) -> str:
        """A code of the terms (quarter, paid_invoice, half_up, "marginal (fixed)") in the
        reader's words."""
        head, _, tail = value.partition(" ")
        if self.language != "zh":
            return _CODES_EN.get(head, head) + (" (fixed)" if tail == "(fixed)" else "")
        return _CODES_ZH.get(head, head) + ("（固定金额）" if tail == "(fixed)" else "")


def _first_up(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---- number formatting ---------------------------------------------------------------------------


def _number(value: Decimal | Fraction | int, places: int = 2) -> str:
    """Thousands separators; at least ``places`` decimals, more only when the value needs them."""
    if isinstance(value, Fraction):
        exact = _fraction_decimal(value)
        if exact is None:
            approximate = Decimal(value.numerator) / Decimal(value.denominator)
            return "≈" + _number(approximate.quantize(Decimal(1).scaleb(-8)), places)
        value = exact
    value = Decimal(value)
    exponent = value.normalize().as_tuple().exponent
    needed = max(0, -exponent) if isinstance(exponent, int) else 0
    return format(value.quantize(Decimal(1).scaleb(-max(places, needed))), ",f")


def _fraction_decimal(value: Fraction) -> Decimal | None:
    """The exact decimal of a fraction, or None when it does not terminate."""
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return None
    places = max(twos, fives)
    return Decimal(value.numerator * 10**places // value.denominator).scaleb(-places)


def _measure_text(value: Decimal | Fraction, measure: Measure) -> str:
    return _number(value, 0 if measure is Measure.QUANTITY else 2)


def _rate_text(agreement: Agreement, rate: Decimal) -> str:
    form = agreement.rebate.form
    if form is RateForm.PERCENT:
        return f"{_number(rate, 0)}%"
    if form is RateForm.PER_UNIT:
        return f"{_number(rate, 2)} {agreement.currency}/unit"
    return f"{_number(rate, minor_unit(agreement.currency))} {agreement.currency}"


def _rate_fraction(agreement: Agreement, band: Band) -> Fraction:
    rate = Fraction(band.rate)
    return rate / 100 if agreement.rebate.form is RateForm.PERCENT else rate


# ---- the formula -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    """The raw rebate of a window: its terms as text and its exact value."""

    method: str
    text: str
    raw: Fraction


def formula(agreement: Agreement, row: ResultRow) -> Formula | None:
    """The method's formula with the row's numbers, or None when nothing is earned."""
    if row.tier == 0:
        return None
    if agreement.minimum is not None and row.tier_basis < agreement.minimum:
        return None
    if agreement.gate is not None and (row.gate_basis or ZERO) < agreement.gate.target:
        return None
    rebate = agreement.rebate
    bands = rebate.tiers[: row.tier]
    rates = [_rate_fraction(agreement, band) for band in bands]
    rate_texts = [_rate_text(agreement, band.rate) for band in bands]
    tier_measure = rebate.tier_measure
    t = Fraction(row.tier_basis)
    p = Fraction(row.window_basis)
    p_text = _measure_text(row.window_basis, rebate.basis)

    def amount(value: Fraction) -> str:
        return _measure_text(value, tier_measure)

    def scaled(parts: str, raw_before: Fraction) -> tuple[str, Fraction]:
        """Value the tier-unit parts at P / T when T and P differ."""
        if p == t:
            return parts, raw_before
        if t == 0:
            return f"({parts}) x P / T, T = 0", Fraction(0)
        return (
            f"({parts}) x {p_text} / {amount(t)}",
            raw_before * p / t,
        )

    method = agreement.growth.mode.value if agreement.growth else rebate.method.value
    if rebate.form is RateForm.FIXED:
        if rebate.method is TierMethod.ALL_REACHED:
            return Formula("all_reached (fixed)", " + ".join(rate_texts), sum(rates, Fraction(0)))
        return Formula(f"{method} (fixed)", rate_texts[-1], rates[-1])
    growth = agreement.growth
    if (growth is None and rebate.method is TierMethod.WHOLE_VOLUME) or (
        growth is not None and growth.mode is GrowthMode.WHOLE_BASIS
    ):
        return Formula(method, f"{rate_texts[-1]} x {p_text}", rates[-1] * p)
    if growth is None and rebate.method is TierMethod.ALL_REACHED:
        joined = " + ".join(rate_texts)
        return Formula(method, f"({joined}) x {p_text}", sum(rates, Fraction(0)) * p)
    if growth is None:
        widths = [
            Fraction(band.upper) - Fraction(band.lower)
            for band in bands[:-1]
            if band.upper is not None
        ]
        lower = Fraction(bands[-1].lower)
        top = t - lower if rebate.method is TierMethod.MARGINAL else t
        parts = [
            f"{amount(width)} x {rate}" for width, rate in zip(widths, rate_texts[:-1], strict=True)
        ]
        parts.append(f"{amount(top)} x {rate_texts[-1]}")
        value = sum((w * r for w, r in zip(widths, rates[:-1], strict=True)), Fraction(0))
        value += top * rates[-1]
        text, raw = scaled(" + ".join(parts), value)
        return Formula(method, text, raw)
    b = Fraction(row.baseline or ZERO)
    if growth.mode is GrowthMode.GROWTH_ONLY:
        growth_part = max(t - b, Fraction(0))
        text, raw = scaled(
            f"{rate_texts[-1]} x ({amount(t)} - {amount(b)})", rates[-1] * growth_part
        )
        return Formula(method, text, raw)
    scale = b / 100
    widths = [
        (Fraction(band.upper) - Fraction(band.lower)) * scale
        for band in bands[:-1]
        if band.upper is not None
    ]
    top = t - Fraction(bands[-1].lower) * scale
    parts = [
        f"{amount(width)} x {rate}" for width, rate in zip(widths, rate_texts[:-1], strict=True)
    ]
    parts.append(f"{amount(top)} x {rate_texts[-1]}")
    value = sum((w * r for w, r in zip(widths, rates[:-1], strict=True)), Fraction(0))
    value += top * rates[-1]
    text, raw = scaled(" + ".join(parts), value)
    return Formula(method, text, raw)


# ---- one row -------------------------------------------------------------------------------------


def _line_summaries(agreement: Agreement, lines: pa.Table, words: _Words) -> list[str]:
    if lines.num_rows == 0:
        return [words("lines_none")]
    rebate = agreement.rebate
    measures = {
        "earning": rebate.basis,
        "target": rebate.tier_measure,
        "baseline": rebate.tier_measure,
        "gate": agreement.gate.measure if agreement.gate else rebate.basis,
    }
    roles = lines.column("role").to_pylist() if "role" in lines.column_names else None
    texts: list[str] = []
    for role in ("earning", "target", "gate", "baseline"):
        if roles is None:
            subset = lines if role == "earning" else lines.slice(0, 0)
        else:
            subset = lines.filter(pc.equal(lines.column("role"), role))
        if subset.num_rows == 0:
            continue
        measure = measures[role]
        values = subset.column(_MEASURE_COLUMN[measure]).to_pylist()
        total = sum((value or ZERO for value in values), ZERO)
        negative = [value for value in values if value is not None and value < 0]
        returns = (
            words("returns", count=len(negative), total=_measure_text(sum(negative, ZERO), measure))
            if negative
            else ""
        )
        ids = sorted(str(line_id) for line_id in subset.column("line_id").to_pylist())
        shown = ", ".join(ids[:SHOWN_LINE_IDS]) + (", ..." if len(ids) > SHOWN_LINE_IDS else "")
        texts.append(
            words(
                "lines",
                role=words(f"role_{role}"),
                count=subset.num_rows,
                measure=words.measure(measure),
                total=_measure_text(total, measure),
                returns=returns,
                ids=shown,
            )
        )
    return texts


def explain(
    agreement: Agreement,
    row: ResultRow,
    lines: pa.Table | None,
    *,
    previous: ResultRow | None = None,
    language: str = "en",
) -> str:
    """A person-readable account of one result row.

    ``lines`` are the sales lines that counted (``SALES_SCHEMA`` plus ``role``), None when the
    caller has no line detail; ``previous`` is the same beneficiary's row of the period before,
    which lets a term-scope explanation show ``R_i - R_(i-1)``.
    """
    words = _Words(language if language in TEXT else "en")
    rebate = agreement.rebate
    currency = agreement.currency
    quantum = Decimal(1).scaleb(-minor_unit(currency))
    out: list[str] = []
    name = f" ({agreement.name})" if agreement.name else ""
    out.append(
        words(
            "title",
            id=agreement.id,
            version=agreement.version,
            name=name,
            beneficiary=row.beneficiary_id,
            index=row.period_index,
            start=row.period_start,
            last=row.period_end - dt.timedelta(days=1),  # periods end on an exclusive day
        )
    )
    kind = words.code(agreement.periods.kind.value)
    if agreement.periods.scope is TierScope.TERM:
        out.append(
            words(
                "window_term",
                start=agreement.term_period.start,
                last=row.period_end - dt.timedelta(days=1),
                kind=kind,
            )
        )
    else:
        out.append(
            words(
                "window_period",
                start=row.period_start,
                last=row.period_end - dt.timedelta(days=1),
                kind=kind,
            )
        )
    out.append(words("event", event=words.code(agreement.eligibility.event.value)))
    if lines is None:
        # A row counts the lines of its own period, not of the whole term-to-date window.
        term = agreement.periods.scope is TierScope.TERM
        key = "lines_unavailable_term" if term else "lines_unavailable"
        out.append(words(key, count=f"{row.lines:,}"))
    else:
        out.extend(_line_summaries(agreement, lines, words))
    out.append(
        words(
            "bases",
            basis=words.measure(rebate.basis),
            p=_measure_text(row.window_basis, rebate.basis),
            tier=words.measure(rebate.tier_measure),
            t=_measure_text(row.tier_basis, rebate.tier_measure),
        )
    )
    parties = agreement.parties
    if parties is not None and parties.members:
        out.append(
            words(
                "pool", members=", ".join(agreement.pool or ()), counterparty=parties.counterparty
            )
        )
        if parties.split is Split.PRO_RATA:
            out.append(
                words("member_basis", basis=_measure_text(row.basis, rebate.basis), lines=row.lines)
            )

    tier_value: Fraction | None = Fraction(row.tier_basis)
    growth = agreement.growth
    if growth is not None:
        baseline = row.baseline or ZERO
        kind_text = words.code(growth.baseline.value)
        if baseline <= 0 or row.tier_basis < 0:
            tier_value = None
            out.append(
                words(
                    "baseline_none", kind=kind_text, b=_measure_text(baseline, rebate.tier_measure)
                )
            )
        else:
            tier_value = 100 * Fraction(row.tier_basis) / Fraction(baseline)
            out.append(
                words(
                    "baseline",
                    kind=kind_text,
                    b=_measure_text(baseline, rebate.tier_measure),
                    growth=_number(tier_value, 2),
                )
            )
    gate = agreement.gate
    if gate is not None:
        g = row.gate_basis or ZERO
        out.append(
            words(
                "gate",
                measure=words.measure(gate.measure),
                g=_measure_text(g, gate.measure),
                target=_measure_text(gate.target, gate.measure),
                verdict=words("gate_met" if g >= gate.target else "gate_missed"),
            )
        )
    if agreement.minimum is not None:
        met = row.tier_basis >= agreement.minimum
        out.append(
            words(
                "minimum",
                t=_measure_text(row.tier_basis, rebate.tier_measure),
                minimum=_measure_text(agreement.minimum, rebate.tier_measure),
                verdict=words("minimum_met" if met else "minimum_missed"),
            )
        )

    value_text = (
        "-"
        if tier_value is None
        else (
            f"{_number(tier_value, 2)}%"
            if growth
            else _measure_text(tier_value, rebate.tier_measure)
        )
    )
    bound_measure = Measure.NET if growth else rebate.tier_measure

    def bound(value: Decimal | None) -> str:
        if value is None:
            return "∞"
        text = _measure_text(value, bound_measure)
        return f"{text}%" if growth else text

    if row.tier == 0:
        out.append(words("tier_none", value=value_text, lower=bound(rebate.tiers[0].lower)))
    else:
        band = rebate.tiers[row.tier - 1]
        out.append(
            words(
                "tier",
                tier=row.tier,
                lower=bound(band.lower),
                upper=bound(band.upper),
                rate=_rate_text(agreement, band.rate),
                value=value_text,
            )
        )

    result = formula(agreement, row)
    if result is None:
        out.append(words("formula_none"))
        raw = Fraction(0)
    else:
        raw = result.raw
        out.append(
            words(
                "formula",
                method=_first_up(words.code(result.method)),  # it begins the line
                formula=result.text,
                raw=_number(raw, minor_unit(currency)),
            )
        )
    exact = _fraction_decimal(raw)
    rounded = quantize_money(
        exact if exact is not None else Decimal(raw.numerator) / Decimal(raw.denominator),
        currency,
        agreement.rounding,
    )
    out.append(
        words(
            "rounding",
            mode=words.code(agreement.rounding.value),
            quantum=quantum,
            raw=_number(raw, minor_unit(currency)),
            rounded=_number(row.window_rebate, minor_unit(currency)),
        )
    )
    projected = agreement.accrual.mode is AccrualMode.EXPECTED
    if rounded != row.window_rebate and not projected:
        out.append(words("rounding_mismatch", row=row.window_rebate, mine=rounded))

    places = minor_unit(currency)
    if agreement.periods.scope is TierScope.TERM:
        if previous is not None or row.period_index == 1:
            before = previous.window_rebate if previous is not None else ZERO
            out.append(
                words(
                    "scope_term",
                    r=_number(row.window_rebate, places),
                    previous=_number(before, places),
                    e=_number(row.window_rebate - before, places),
                )
            )
        else:
            out.append(words("scope_term_unknown"))
    cap = agreement.cap
    if cap.per_period is not None:
        earned = row.window_rebate - (
            previous.window_rebate
            if previous is not None and agreement.periods.scope is TierScope.TERM
            else ZERO
        )
        out.append(
            words(
                "cap_period",
                cap=words.money(cap.per_period, currency),
                verdict=words("binding" if earned > cap.per_period else "not_binding"),
            )
        )
    if agreement.guarantee is not None:
        carry = words("carry") if agreement.guarantee.carry_forward else ""
        out.append(
            words(
                "guarantee", amount=words.money(agreement.guarantee.amount, currency), carry=carry
            )
        )
    if cap.per_term is not None:
        out.append(
            words(
                "cap_term",
                cap=words.money(cap.per_term, currency),
                cumulative=words.money(row.cumulative_rebate, currency),
            )
        )
    if parties is not None and parties.split is Split.PRO_RATA:
        out.append(words("split"))
    out.append(
        words(
            "rebate",
            rebate=words.money(row.rebate, currency),
            cumulative=words.money(row.cumulative_rebate, currency),
        )
    )
    if projected:
        out.append(
            words(
                "accrual_expected",
                accrual=words.money(row.accrual, currency),
                cumulative=words.money(row.cumulative_rebate, currency),
            )
        )
    else:
        out.append(words("accrual_actual", accrual=words.money(row.accrual, currency)))
    text = "\n".join(out)
    if words.language != "zh":
        return text
    # A per-unit rate reads "0.08 CNY/unit" in the formula; in Chinese, 0.08 元/件.
    return text.replace(f"{currency}/unit", "元/件" if currency == "CNY" else f"{currency}/件")


# ---- many rows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementSummary:
    """One agreement's results in a line: how many beneficiaries, how much basis and rebate."""

    agreement_id: str
    version: int
    name: str
    currency: str
    beneficiaries: int
    periods: int
    basis: Decimal  # sum of every row's own-period basis: the term's basis
    rebate: Decimal  # sum of every row's rebate: the term's rebate so far
    accrual: Decimal  # the latest accrual of each beneficiary, summed


def summarize(agreements: Sequence[Agreement], results: pa.Table) -> list[AgreementSummary]:
    """Per agreement (in the order given), totals over its result rows."""
    rows = rows_from_table(results)
    summaries: list[AgreementSummary] = []
    for agreement in agreements:
        mine = [
            row
            for row in rows
            if row.agreement_id == agreement.id and row.version == agreement.version
        ]
        latest: dict[str, ResultRow] = {}
        for row in mine:
            latest[row.beneficiary_id] = row  # rows are sorted by period within a beneficiary
        summaries.append(
            AgreementSummary(
                agreement_id=agreement.id,
                version=agreement.version,
                name=agreement.name,
                currency=agreement.currency,
                beneficiaries=len(latest),
                periods=len({row.period_index for row in mine}),
                basis=sum((row.basis for row in mine), ZERO),
                rebate=sum((row.rebate for row in mine), ZERO),
                accrual=sum((row.accrual for row in latest.values()), ZERO),
            )
        )
    return summaries


class NoSuchResultError(InputError):
    """An explanation was asked for a row the results do not have."""

    code = "no_such_result"


def select_rows(
    agreements: Sequence[Agreement],
    results: pa.Table,
    *,
    agreement_id: str,
    beneficiary_id: str | None = None,
    period: str | None = None,
) -> list[tuple[Agreement, ResultRow, ResultRow | None]]:
    """The rows to explain, each with its agreement and its beneficiary's previous row.

    ``period`` is the 1-based period number or a date inside the period (``2026-05-15``).
    """
    matching = [agreement for agreement in agreements if agreement.id == agreement_id]
    if not matching:
        known = ", ".join(agreement.id for agreement in agreements)
        raise NoSuchResultError(
            f"no agreement {agreement_id!r} (agreements: {known})", field="--explain"
        )
    agreement = max(matching, key=lambda item: item.version)
    rows = [
        row
        for row in rows_from_table(results)
        if row.agreement_id == agreement.id and row.version == agreement.version
    ]
    previous: dict[tuple[str, int], ResultRow] = {}
    by_beneficiary: dict[str, ResultRow] = {}
    for row in rows:
        if row.beneficiary_id in by_beneficiary:
            previous[(row.beneficiary_id, row.period_index)] = by_beneficiary[row.beneficiary_id]
        by_beneficiary[row.beneficiary_id] = row
    if beneficiary_id is not None:
        rows = [row for row in rows if row.beneficiary_id == beneficiary_id]
        if not rows:
            raise NoSuchResultError(
                f"agreement {agreement_id} has no result for customer {beneficiary_id!r}",
                field="--customer",
            )
    if period is not None:
        rows = [row for row in rows if _in_period(row, period)]
        if not rows:
            raise NoSuchResultError(
                f"agreement {agreement_id} has no result for period {period!r}", field="--period"
            )
    return [(agreement, row, previous.get((row.beneficiary_id, row.period_index))) for row in rows]


def _in_period(row: ResultRow, period: str) -> bool:
    if period.isdigit():
        return row.period_index == int(period)
    try:
        day = dt.date.fromisoformat(period)
    except ValueError:
        raise NoSuchResultError(
            f"{period!r} is neither a period number nor a date (2026-05-15)", field="--period"
        ) from None
    return row.period_start <= day < row.period_end


def explain_results(
    agreements: Sequence[Agreement],
    results: pa.Table,
    *,
    agreement_id: str,
    beneficiary_id: str | None = None,
    period: str | None = None,
    sales: pa.Table,
    customers: pa.Table | None = None,
    products: pa.Table | None = None,
    as_of: dt.date | None = None,
    language: str = "en",
    unstated_currency: str | None = None,
) -> list[str]:
    """Explanations of the selected result rows, each with the lines that counted for it
    (``unstated_currency`` as for ``columnar.calculate``)."""
    texts: list[str] = []
    for agreement, row, previous in select_rows(
        agreements,
        results,
        agreement_id=agreement_id,
        beneficiary_id=beneficiary_id,
        period=period,
    ):
        lines = columnar.counted_lines(
            agreement,
            beneficiary_id=row.beneficiary_id,
            period_index=row.period_index,
            sales=sales,
            customers=customers,
            products=products,
            as_of=as_of,
            unstated_currency=unstated_currency,
        )
        texts.append(explain(agreement, row, lines, previous=previous, language=language))
    return texts
