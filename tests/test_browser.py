"""Reports in a real browser: headless Debian Chromium driven by Playwright, fully offline.

Chromium is ``/usr/bin/chromium`` (installed by ``make browser``); Playwright never downloads
a browser here. Every request the page makes is recorded, and any that is not ``file:`` or
``data:`` is aborted and fails the test.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import sync_playwright

from decaylab.report import write_report
from decaylab.report.html import png_data_uri

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OfflinePage:
    """A page in a fresh context that records console errors and aborts any non-local request."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1366, "height": 768})
        self.remote_requests: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.remote_requests.append(url)
            route.abort()

    def close(self):
        self.context.close()


@pytest.fixture
def offline_page(browser):
    page = OfflinePage(browser)
    yield page
    page.close()


def check_report_renders(offline, index, n_sections, n_images, screenshot):
    """Open ``index``; every section is laid out, every image decoded, no network, no errors."""
    page = offline.page
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    sections = page.locator("section.study")
    assert sections.count() == n_sections
    for i in range(n_sections):
        box = sections.nth(i).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 50
    toc_targets = page.eval_on_selector_all("nav.toc a", "as => as.map(a => a.getAttribute('href'))")
    section_ids = page.eval_on_selector_all("section.study", "ss => ss.map(s => '#' + s.id)")
    assert toc_targets == section_ids
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
    assert len(images) == n_images
    assert all(complete and w > 0 and h > 0 and shown > 0 for complete, w, h, shown in images), images
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert offline.remote_requests == [] and offline.errors == []


def check_slider_scrubs(offline, section_key, frame_srcs):
    """Moving the range input (arrow keys, then set by value) shows each frame's image and value label."""
    page = offline.page
    box = page.locator(f'[data-slider="{section_key}"]')
    slider, image, output = box.locator("input[type=range]"), box.locator("img"), box.locator("output")
    shown, labels = [image.get_attribute("src")], [output.inner_text()]
    slider.focus()
    for _ in range(len(frame_srcs) - 1):
        page.keyboard.press("ArrowRight")
        shown.append(image.get_attribute("src"))
        labels.append(output.inner_text())
    assert shown == frame_srcs and len(set(labels)) == len(frame_srcs)
    slider.fill("0")
    assert image.get_attribute("src") == frame_srcs[0]
    assert image.evaluate("i => i.complete && i.naturalWidth > 0")
    return labels


@pytest.mark.slow
def test_hand_made_report_renders_offline_and_slider_scrubs(offline_page, tmp_path, report_sections):
    sections = report_sections()
    index = write_report(tmp_path / "report", "Hand-made report", sections, {"n": 1}, intro="Intro.")
    check_report_renders(offline_page, index, n_sections=2, n_images=3, screenshot=tmp_path / "hand.png")
    labels = check_slider_scrubs(offline_page, "boundaries", [png_data_uri(f.png) for f in sections[0].slider.frames])
    assert labels == ["λ = 0", "λ = 0.001", "λ = 0.01", "λ = 0.1"]
    caption = offline_page.page.locator('[data-slider="boundaries"] .frame-caption').inner_text()
    assert caption == "slope per λ: slope 1.000"
    # one self-contained file: moved alone to another directory, it still shows everything
    moved = tmp_path / "elsewhere" / "copy.html"
    moved.parent.mkdir()
    moved.write_bytes(index.read_bytes())
    check_report_renders(offline_page, moved, n_sections=2, n_images=3, screenshot=tmp_path / "moved.png")
    assert offline_page.remote_requests == [] and offline_page.errors == []


@pytest.mark.slow
def test_hostile_strings_show_as_text_and_never_run(offline_page, tmp_path, hostile, report_sections):
    sections = report_sections(text=hostile, caption=hostile)
    sections[0].title = hostile
    sections[0].slider.label = hostile
    index = write_report(tmp_path, hostile, sections, {}, intro=hostile)
    page = offline_page.page
    page.on("dialog", lambda dialog: (offline_page.errors.append("dialog: " + dialog.message), dialog.dismiss()))
    check_report_renders(offline_page, index, n_sections=2, n_images=3, screenshot=tmp_path / "hostile.png")
    assert page.title() == hostile
    assert page.locator("h1").inner_text() == hostile
    assert page.locator("section.study h2").first.inner_text() == hostile
    page.locator('[data-slider="boundaries"] input').fill("3")
    assert page.locator('[data-slider="boundaries"] .frame-caption').inner_text() == hostile + ": slope 0.250"
    assert page.locator('[data-slider="boundaries"] output').inner_text() == hostile + " = 0.1"
    assert page.locator("script").count() == 2 and page.locator("img").count() == 3
    assert offline_page.errors == []  # no alert() dialog, no CSP violation


def test_network_guard_sees_remote_requests(offline_page):
    """The guard the other tests rely on does catch a page that reaches out (and blocks it)."""
    offline_page.page.set_content('<img src="https://example.invalid/x.png"><link rel="stylesheet" '
                                  'href="http://example.invalid/a.css">')
    offline_page.page.wait_for_load_state("load")
    assert sorted(offline_page.remote_requests) == ["http://example.invalid/a.css", "https://example.invalid/x.png"]


@pytest.mark.slow  # needs the quick demo run (~20 s)
def test_quick_demo_report_renders_offline_and_slider_scrubs(offline_page, tmp_path, quick_demo_run):
    run, report = quick_demo_run  # shared with test_cli_demo.py: one demo per test run
    assert run["returncode"] == 0, run["stderr"][-3000:]
    outline = json.loads((report / "summary.json").read_text(encoding="utf-8"))["report"]["sections"]
    n_images = sum(len(section["figures"]) + ("slider" in section) for section in outline)
    check_report_renders(offline_page, report / "index.html", len(outline), n_images, tmp_path / "demo.png")
    key = outline[0]["key"]
    frames = json.loads(offline_page.page.locator(f'[data-slider="{key}"] script').text_content())
    assert len(frames["srcs"]) == len(outline[0]["slider"]["values"]) >= 6
    assert len(set(frames["srcs"])) == len(frames["srcs"])  # every λ has its own boundary plot
    labels = check_slider_scrubs(offline_page, key, frames["srcs"])
    assert labels[0].endswith(" = 0")
    assert offline_page.remote_requests == [] and offline_page.errors == []
