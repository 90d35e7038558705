"""The HTML report renderer, summary.json, the terminal table and the progress helper."""

from __future__ import annotations

import base64
import hashlib
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from decaylab._progress import progress_bar
from decaylab.report import Figure, Section, render_html, text_table, to_jsonable, write_report


@pytest.fixture(scope="module")
def sections(report_sections):
    return report_sections()


class PageParser(HTMLParser):
    """Collects tags, attributes, text and the contents of every <script>/<style> element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text, self.scripts, self.styles = [], [], [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value) for name, value in attrs)
        if tag in ("script", "style"):
            self._in = (tag, dict(attrs).get("type"), [])

    def handle_endtag(self, tag):
        if self._in and tag == self._in[0]:
            kind, type_, chunks = self._in
            (self.scripts if kind == "script" else self.styles).append((type_, "".join(chunks)))
            self._in = None

    def handle_data(self, data):
        (self._in[2] if self._in else self.text).append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def test_write_report_files_sections_and_images(tmp_path, sections, report_lambdas):
    index = write_report(tmp_path / "out" / "nested", "Demo", sections, {"boundaries": {"norm": [3.0, 2.0]}},
                         intro="What decay does.\n\nA second intro paragraph.")
    assert index == tmp_path / "out" / "nested" / "index.html"
    page = index.read_text(encoding="utf-8")
    doc = parse(page)
    ids = [value for tag, name, value in doc.attrs if name == "id" and tag == "section"]
    assert ids == ["boundaries", "ridge"]
    hrefs = [value for tag, name, value in doc.attrs if tag == "a" and name == "href"]
    assert hrefs == ["#boundaries", "#ridge"]  # the table of contents
    srcs = [value for tag, name, value in doc.attrs if tag == "img" and name == "src"]
    expected = [sections[0].slider.frames[0].png, sections[0].figures[0].png, sections[1].figures[0].png]
    assert [base64.b64decode(s.split(",", 1)[1]) for s in srcs] == expected
    text = "".join(doc.text)
    assert "Decision boundaries vs λ" in text and "Ridge overlay" in text and "A second paragraph." in text
    assert "What decay does." in text and "λ = 0" in text  # intro and the slider's value label
    assert [t for t, n, v in doc.attrs if n == "class" and v == "intro"] == ["p", "p"]
    assert doc.tags.count("tr") == 1 + len(report_lambdas) and doc.tags.count("p") >= 4
    summary = json.loads((index.parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["boundaries"] == {"norm": [3.0, 2.0]}
    outline = summary["report"]["sections"]
    assert [s["key"] for s in outline] == ["boundaries", "ridge"]
    assert outline[0]["slider"]["values"] == list(report_lambdas)
    assert outline[0]["tables"][0]["rows"][1][1] == pytest.approx(1 / 1.03)
    assert outline[1]["figures"] == [{"name": "ridge-fit", "caption": "ridge vs GD"}]


def test_slider_frames_are_in_a_json_block(sections):
    doc = parse(render_html("Demo", sections))
    data_blocks = [json.loads(body) for type_, body in doc.scripts if type_ == "application/json"]
    assert len(data_blocks) == 1
    frames = data_blocks[0]
    assert [base64.b64decode(s.split(",", 1)[1]) for s in frames["srcs"]] == [f.png for f in sections[0].slider.frames]
    assert frames["values"] == ["λ = 0", "λ = 0.001", "λ = 0.01", "λ = 0.1"]
    assert frames["captions"][-1] == "slope per λ: slope 0.250"
    ranges = [dict((n, v) for t, n, v in doc.attrs if t == "input")]
    assert ranges == [{"type": "range", "id": "slider-boundaries", "min": "0", "max": "3", "step": "1", "value": "0"}]


def test_page_is_offline_and_csp_allows_only_its_own_code(sections):
    page = render_html("Demo", sections)
    doc = parse(page)
    for tag, name, value in doc.attrs:
        if name in ("src", "href"):
            assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:60])
    assert "http://" not in page and "https://" not in page and "@import" not in page and "url(" not in page
    csp = next(v for t, n, v in doc.attrs if t == "meta" and n == "content" and "default-src" in v)
    [(_, style)] = doc.styles
    [code] = [body for type_, body in doc.scripts if type_ is None]

    def sha(source):
        return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"
    assert f"style-src {sha(style)};" in csp and f"script-src {sha(code)};" in csp
    assert "default-src 'none'" in csp and "img-src data:;" in csp and "unsafe-inline" not in csp


def test_hostile_strings_are_escaped_everywhere(tmp_path, hostile, report_lambdas, report_sections):
    hostile_sections = report_sections(text=hostile, caption=hostile)
    hostile_sections[0].title = hostile
    hostile_sections[0].slider.label = hostile
    index = write_report(tmp_path, hostile, hostile_sections, {hostile: hostile}, intro=hostile)
    page = index.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<img src=x" not in page and "onerror=alert(2)>" not in page
    doc = parse(page)
    assert set(doc.tags) <= {"html", "head", "meta", "title", "style", "body", "header", "div", "h1", "h2", "p",
                             "nav", "ul", "li", "a", "main", "section", "figure", "img", "figcaption", "label", "span",
                             "input", "output", "script", "table", "caption", "thead", "tbody", "tr", "th", "td",
                             "footer"}
    assert doc.tags.count("script") == 2  # the page's own script and the slider's JSON data
    assert doc.tags.count("img") == 3
    assert not [name for _, name, _ in doc.attrs if name.startswith("on")]
    text = "".join(doc.text)
    assert text.count(hostile) >= 6  # title, h1, intro, toc, h2, paragraphs, captions: shown as text
    [frames] = [json.loads(body) for type_, body in doc.scripts if type_ == "application/json"]
    assert frames["captions"] == [hostile + f": slope {1 / (1 + 30 * lam):.3f}" for lam in report_lambdas]
    assert frames["values"][0] == hostile + " = 0"
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary[hostile] == hostile and summary["report"]["title"] == hostile


def test_failed_write_keeps_the_previous_report(tmp_path, sections):
    write_report(tmp_path, "First", sections, {"run": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "notes.txt").write_text("mine")
    bad_png = [Section("x", "X", "", figures=[Figure("f", b"GIF89a not a png")])]
    with pytest.raises(ValueError, match=r"sections\[0\]\.figures\[0\]\.png must be PNG"):
        write_report(tmp_path, "Second", bad_png, {"run": 2})
    with pytest.raises(TypeError, match=r"summary\['run'\]\[1\] must hold only"):
        write_report(tmp_path, "Second", sections, {"run": [2, object()]})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "notes.txt"} == before
    assert (tmp_path / "notes.txt").read_text() == "mine"
    write_report(tmp_path, "Third", sections[1:], {"run": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "notes.txt", "summary.json"]
    assert json.loads((tmp_path / "summary.json").read_text())["run"] == 3


def test_out_dir_must_be_a_directory(tmp_path, sections):
    a_file = tmp_path / "report.html"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="out_dir must be a directory .*report.html"):
        write_report(a_file, "T", sections, {})
    with pytest.raises(ValueError, match="out_dir must be a directory .*is a file"):
        write_report(a_file / "sub", "T", sections, {})
    with pytest.raises(TypeError, match="out_dir must be a path"):
        write_report(3, "T", sections, {})


@pytest.mark.parametrize("mutate, error, message", [
    (lambda s: s.__setitem__(1, Section("boundaries", "dup", "")), ValueError, r"sections\[1\]\.key must be unique"),
    (lambda s: setattr(s[1], "key", "has space"), ValueError, r"sections\[1\]\.key must be letters.*'has space'"),
    (lambda s: setattr(s[1].figures[0], "name", "norms"), ValueError, r"figures\[0\]\.name must be unique.*'norms'"),
    (lambda s: setattr(s[0].slider, "values", (0.0, 1.0)), ValueError,
     r"slider\.values must have one value per frame \(4\), got 2"),
    (lambda s: setattr(s[0].slider, "captions", ["a"]), ValueError, r"slider\.captions must be empty or one per frame"),
    (lambda s: setattr(s[0].slider, "values", (0.0, 1.0, float("nan"), 2.0)), ValueError,
     r"slider\.values\[2\] must be finite"),
    (lambda s: setattr(s[0].tables[0], "rows", [[1, 2]]), ValueError, r"tables\[0\]\.rows\[0\] must have 3 cells"),
    (lambda s: setattr(s[1], "title", None), TypeError, r"sections\[1\]\.title must be a str, got None"),
    (lambda s: s.append("text"), TypeError, r"sections\[2\] must be a decaylab\.report\.model\.Section, got str"),
])
def test_malformed_sections_are_named(tmp_path, mutate, error, message, report_sections):
    sections = report_sections()
    mutate(sections)
    with pytest.raises(error, match=message):
        write_report(tmp_path, "T", sections, {})
    assert not list(tmp_path.iterdir())


def test_summary_conversion():
    converted = to_jsonable({"a": np.float32(0.5), "b": np.arange(3), "c": torch.tensor([[1.0, 2.0]]),
                             "d": (float("nan"), float("inf"), 1), 3: np.bool_(True), "e": torch.tensor(2)})
    assert converted == {"a": 0.5, "b": [0, 1, 2], "c": [[1.0, 2.0]], "d": [None, None, 1], "3": True, "e": 2}
    assert json.loads(json.dumps(converted, allow_nan=False)) == converted
    with pytest.raises(TypeError, match=r"summary\['x'\] keys must be strings or numbers, got \(1, 2\)"):
        to_jsonable({"x": {(1, 2): 0}})
    with pytest.raises(ValueError, match="summary must not have a 'report' key"):
        write_report("unused", "T", [], {"report": 1})
    with pytest.raises(TypeError, match="summary must be a dict, got list"):
        write_report("unused", "T", [], [1])


def test_text_table_aligns_numbers_right_and_marks_missing():
    table = text_table([{"study": "boundaries", "λ": 0.01, "acc": 0.87341},
                        {"study": "ridge", "λ": 1e-4, "gap": 3.2e-7}])
    lines = table.splitlines()
    assert lines[0].split() == ["study", "λ", "acc", "gap"]
    assert lines[2].split() == ["boundaries", "0.01", "0.8734", "-"]
    assert lines[3].split() == ["ridge", "0.0001", "-", "3.2e-07"]
    assert lines[2].index("0.01") + 4 == lines[3].index("0.0001") + 6  # right-aligned
    with pytest.raises(TypeError, match=r"rows\[1\] must be a dict, got int"):
        text_table([{}, 1])


def test_progress_bar_goes_to_stderr_and_can_be_silenced(capsys):
    assert list(progress_bar(range(3), desc="fits", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")
    with progress_bar(total=2, desc="fits", leave=True) as bar:
        bar.update(2)
    out, err = capsys.readouterr()
    assert out == "" and "fits" in err and "2/2" in err
