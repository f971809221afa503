"""The README's picture of the `c3d-rt serve` dashboard: serve four synthetic cameras, open the page in
headless Chromium (Debian's `chromium`) once every stream has predicted, and save a JPEG.

    python tools/dashboard_screenshot.py --model runs/demo/export --out docs/serve-dashboard.jpg
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/serve-dashboard.jpg"))
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = p.parse_args()
    sources = ["door=synthetic@30", "yard=synthetic@25", "lab=synthetic@15", "dock=synthetic@30"]
    cmd = [sys.executable, "-m", "c3d_rt.cli", "serve", "--model", str(args.model), "--port", "0", "--stride", "4",
           "--smooth", "4", *[a for s in sources for a in ("--source", s)]]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        url = next(m.group(1) for line in server.stderr if (m := re.search(r"listening on (http://\S+)", line)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            streams = json.load(urllib.request.urlopen(url + "api/streams"))["streams"]
            if len(streams) == len(sources) and all(s["predictions"] > 8 for s in streams):
                break
            time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 640})
            page.goto(url)
            page.wait_for_function("[...document.querySelectorAll('.tile img')].every(i => i.naturalWidth > 0)",
                                   timeout=30000)
            time.sleep(2)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), type="jpeg", quality=85)
            browser.close()
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
