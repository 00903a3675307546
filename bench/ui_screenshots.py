"""Screenshots of a range run in the UI, as in docs/architecture.md#runs-of-several-hours.

Against a running ``dg dev`` whose instance holds a finished backfill of a range in which one hour failed
``invalid_ratio`` (set-up in that section), this drives Debian's Chromium with Playwright and saves:

- ``range_run_backfill.png`` and ``range_run_backfill_runs.png``: the backfill's Overview and Runs tabs;
- ``range_run_partitions.png``: ``consolidated_output``'s partitions over the range, the failed hour selected;
- ``range_run_check.png``: the execution history of ``processed_chunks``' ``invalid_ratio`` check;
- ``range_run_unpublished.png``: ``processed_chunks``' partition of the failed hour and its metadata.

    python bench/ui_screenshots.py --port 3000 --backfill BACKFILL_ID \\
        --from 2026-01-05-00:00 --to 2026-01-05-11:00 --hour 2026-01-05-05:00 --out docs
"""

import argparse
import json
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
WIDTH = 1400
SETTLE_MS = 3000  # the UI's queries answer after networkidle on a busy machine


def mark_nux_seen(base: str) -> None:
    """Mark the first visit's newsletter dialog seen, so it does not cover the pages."""
    body = json.dumps({"query": "mutation { setNuxSeen }"}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def open_page(page: Page, url: str) -> None:
    page.goto(url, wait_until="networkidle")
    page.wait_for_timeout(SETTLE_MS)


def select_range(page: Page, first: str, last: str) -> None:
    """Narrow a partitions view to the hours ``first`` to ``last``."""
    box = page.locator("input").first
    box.fill(f"[{first}...{last}]")
    box.press("Enter")
    page.wait_for_timeout(SETTLE_MS)


def shoot(page: Page, path: Path, height: int) -> None:
    page.screenshot(path=path, clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--backfill", required=True)
    parser.add_argument("--from", dest="first", required=True)
    parser.add_argument("--to", dest="last", required=True)
    parser.add_argument("--hour", required=True, help="the hour that failed its gate")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    mark_nux_seen(base)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        try:
            open_page(page, f"{base}/runs/b/{args.backfill}")
            page.get_by_text("Partitions targeted").wait_for()
            shoot(page, args.out / "range_run_backfill.png", 330)
            open_page(page, f"{base}/runs/b/{args.backfill}?tab=runs")
            shoot(page, args.out / "range_run_backfill_runs.png", 360)

            open_page(page, f"{base}/assets/consolidated_output?view=partitions&partition={args.hour}")
            select_range(page, args.first, args.last)
            page.get_by_text("did not materialize this asset").wait_for()
            shoot(page, args.out / "range_run_partitions.png", 790)

            open_page(page, f"{base}/assets/processed_chunks?view=checks")
            page.get_by_text("invalid_ratio").first.click()
            page.get_by_text("Execution history").click()
            page.wait_for_timeout(SETTLE_MS)
            shoot(page, args.out / "range_run_check.png", 1000)

            open_page(page, f"{base}/assets/processed_chunks?view=partitions&partition={args.hour}")
            select_range(page, args.first, args.last)
            page.get_by_text("not_published_because").wait_for()
            shoot(page, args.out / "range_run_unpublished.png", 830)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
