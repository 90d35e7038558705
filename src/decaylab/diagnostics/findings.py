"""What the doctor reports: a :class:`Finding` (severity, code, parameters, why, fix) and the
:class:`Findings` of one call, most severe first, whose ``str()`` is the readable report."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Finding", "Findings", "SEVERITIES", "if_any"]

SEVERITIES = ("error", "warning", "info")
_SHOWN_PARAMS = 6


@dataclass(frozen=True)
class Finding:
    """One problem: how bad (``severity``), which (``code``), where (``params``), why it matters
    (``why``) and what to do (``fix``)."""

    severity: str
    code: str
    params: tuple[str, ...]
    why: str
    fix: str

    def __str__(self) -> str:
        shown = ", ".join(self.params[:_SHOWN_PARAMS])
        if len(self.params) > _SHOWN_PARAMS:
            shown += f", … (+{len(self.params) - _SHOWN_PARAMS} more)"
        lines = [f"[{self.severity}] {self.code}: {self.why}"]
        if shown:
            lines.append(f"    params: {shown}")
        lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


class Findings(list):
    """The doctor's findings, most severe first; ``str()`` is the readable report."""

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self]

    def to_dicts(self) -> list[dict]:
        """Plain dicts (``severity``, ``code``, ``params`` as a list, ``why``, ``fix``), ready for JSON."""
        return [{**dataclasses.asdict(f), "params": list(f.params)} for f in self]

    def __str__(self) -> str:
        if not self:
            return "decaylab doctor: no weight-decay problems found."
        counts = ", ".join(f"{n} {s}{'s' if n > 1 else ''}" for s in SEVERITIES
                           if (n := sum(f.severity == s for f in self)))
        return "\n".join([f"decaylab doctor: {counts}"] + [str(f) for f in self])


def if_any(params: Iterable[str], severity: str, code: str, why: str, fix: str) -> list[Finding]:
    """One finding about ``params``, or none when there are none."""
    params = tuple(params)
    return [Finding(severity, code, params, why, fix)] if params else []
