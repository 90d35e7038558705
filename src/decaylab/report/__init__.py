"""Reports: study results as one static, offline HTML page plus a ``summary.json``.

Studies build :class:`Section` objects (text, :class:`Figure`, :class:`Table`, an optional
λ :class:`Slider`) and a dict of numbers; :func:`write_report` renders them.
"""

from decaylab.report.html import render_html
from decaylab.report.model import Figure, Section, Slider, Table
from decaylab.report.summary import to_jsonable
from decaylab.report.text import text_table
from decaylab.report.write import render_report, write_report

__all__ = ["Figure", "Section", "Slider", "Table", "render_html", "render_report", "text_table", "to_jsonable",
           "write_report"]
