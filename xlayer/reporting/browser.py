"""Load a report in headless Chromium: check it and take a screenshot.

Uses Debian's ``chromium`` and ``chromium-driver`` through selenium (optional dependency,
only this module imports it). The browser runs offline: no sandbox (root in CI), no GPU,
no background networking, component updates, sync or QUIC, and a throw-away profile.

    python -m xlayer.reporting.browser report.html docs/img/report.png [--width 1280] [--height 1500]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")

# for every chart: its name, the number of drawn elements, and its rendered size
CHART_PROBE = """
return Array.from(document.querySelectorAll('svg.chart-svg')).map(function (s) {
  var r = s.getBoundingClientRect();
  return {name: s.getAttribute('data-chart'), elements: s.querySelectorAll('*').length,
          width: r.width, height: r.height};
});
"""


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, or None when either is missing."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        return None
    return chrome, driver


@contextmanager
def headless(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A selenium Chrome driver on headless Chromium with browser console logging on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    chrome, driver_path = found
    with tempfile.TemporaryDirectory(prefix="xlayer-chromium-") as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = chrome
        for f in CHROMIUM_FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={profile}")
        opts.add_argument(f"--window-size={width},{height}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
        try:
            yield drv
        finally:
            drv.quit()


def inspect(driver: Any, html_path: str | Path) -> dict[str, Any]:
    """Load ``html_path``; return its console errors and a description of every chart."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(Path(html_path).resolve().as_uri())
    charts = driver.execute_script(CHART_PROBE)
    logs = driver.get_log("browser")
    errors = [e["message"] for e in logs if e.get("level") in ("SEVERE", "ERROR")]
    return {"title": driver.title, "charts": charts, "console_errors": errors}


def screenshot(driver: Any, png_path: str | Path, width: int | None = None, height: int | None = None) -> Path:
    """Save a PNG of the current page; ``height=None`` captures the whole page."""
    if width is None:
        width = driver.execute_script("return window.innerWidth")
    if height is None:
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height)
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="screenshot an xlayer report in headless Chromium")
    ap.add_argument("html")
    ap.add_argument("png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=None, help="default: the whole page")
    a = ap.parse_args(argv)
    with headless(a.width, a.height or 1000) as drv:
        info = inspect(drv, a.html)
        if info["console_errors"]:
            print("console errors:", *info["console_errors"], sep="\n  ", file=sys.stderr)
            return 1
        screenshot(drv, a.png, a.width, a.height)
    print(f"{a.png}: {len(info['charts'])} charts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
