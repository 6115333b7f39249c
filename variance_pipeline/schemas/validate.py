"""Apply a pandera schema so that bad rows are reported and quarantined, never silently kept.

``pandera`` raises on the first error unless validation is lazy; lazy validation gives every
failure at once as a frame (``schema_context, column, check, failure_case, index``), which is
what a trader needs in the asset check to see *which* symbol broke *which* rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.errors

from variance_pipeline.schemas.dataset import Dataset


@dataclass(frozen=True)
class ValidationOutcome:
    """Good rows, the rows that failed, and why (empty frames when everything passed)."""

    dataset: str
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failure_cases: pd.DataFrame
    schema_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure_cases.empty and self.schema_error is None

    def summary(self, limit: int = 20) -> str:
        if self.ok:
            return f"{self.dataset}: {len(self.valid)} rows valid"
        if self.schema_error:
            return f"{self.dataset}: {self.schema_error}"
        cases = self.failure_cases.head(limit)
        lines = [
            f"{self.dataset}: {len(self.failure_cases)} failure(s), {len(self.quarantined)} row(s) quarantined"
        ]
        for row in cases.itertuples(index=False):
            lines.append(f"  column={row.column} check={row.check} value={row.failure_case!r} row={row.index}")
        return "\n".join(lines)


REASON_COLUMN = "quarantine_reason"


def _with_reasons(rows: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """``rows`` plus ``quarantine_reason``: every check the row failed with the values it saw
    (``high_covers_open_close (open=.., high=..)``), or the frame-wide failures for a row none
    names, so a quarantined file says why on its own."""

    def word(value: object) -> str:
        return "-" if value is None or value is pd.NA or value != value else str(value)

    def describe(group: pd.DataFrame) -> str:
        parts = []
        for check, failed in group.groupby("check", sort=False):
            values = ", ".join(f"{word(c)}={word(v)}" for c, v in zip(failed["column"], failed["failure_case"]))
            parts.append(f"{check} ({values})")
        return "; ".join(parts)

    named = cases["index"].notna()
    by_row = {int(index): describe(group) for index, group in cases[named].groupby("index", sort=False)}
    frame_wide = describe(cases[~named]) or "frame-wide failure"
    reasons = [by_row.get(int(i), frame_wide) if isinstance(i, (int, float)) else frame_wide for i in rows.index]
    return rows.assign(**{REASON_COLUMN: reasons})


def validate_frame(declared: Dataset, frame: pd.DataFrame) -> ValidationOutcome:
    """Validate lazily against ``declared``'s pandera schema; split ``frame`` into valid rows and
    quarantined rows.

    Failures that are not tied to a row (a missing column, a wrong dtype for a whole column)
    quarantine every row: nothing in a frame with a broken shape can be trusted.
    """
    schema, dataset = declared.pandera, declared.name
    empty = frame.iloc[0:0]
    try:
        validated = schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases.copy()
        cases["index"] = pd.to_numeric(cases["index"], errors="coerce")
        row_index = cases["index"].dropna().astype(int).unique()
        frame_level = cases["index"].isna().any()
        if frame_level:
            return ValidationOutcome(dataset, empty, _with_reasons(frame, cases), cases.reset_index(drop=True))
        bad = frame.index.isin(row_index)
        good = frame.loc[~bad]
        try:
            good = schema.validate(good, lazy=True)
        except pandera.errors.SchemaErrors:
            # Removing rows can break a frame-wide check (e.g. uniqueness spans rows); be strict.
            return ValidationOutcome(dataset, empty, _with_reasons(frame, cases), cases.reset_index(drop=True))
        return ValidationOutcome(dataset, good, _with_reasons(frame.loc[bad], cases), cases.reset_index(drop=True))
    except pandera.errors.SchemaError as exc:  # raised for frame-level problems even when lazy
        return ValidationOutcome(
            dataset, empty, frame.assign(**{REASON_COLUMN: str(exc)}), pd.DataFrame(), schema_error=str(exc)
        )
    return ValidationOutcome(dataset, validated, empty, pd.DataFrame())
