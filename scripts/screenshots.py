"""The README's screenshots: the real app on the bundled demo run (real KB, detectors and matcher),
driven by Textual's Pilot, saved as the app's own SVG screenshots and converted to PNG (cairosvg).

    .venv/bin/python scripts/screenshots.py [--db KB] [--out docs/screenshots]

Notes go to a temporary file, so the shots never show (or change) your own marks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FONT = os.environ.get("SCREENSHOT_FONT", "DejaVu Sans Mono")  # any monospace font fontconfig knows

# (file name, terminal size, keys pressed after the ranking shows, what it shows)
SHOTS = [
    ("main-120x40", (120, 40), [], "the demo run: ranked suggestions with strength, what was seen, the fix, the evidence plot"),
    ("main-80x24", (80, 24), [], "the same at 80x24: list above, detail below"),
    ("detail-80x24", (80, 24), ["enter", "pagedown"], "enter moves the keys to the detail pane (its title says so); the evidence plot"),
    ("marks-120x40", (120, 40), ["h", "down", "u", "down", "x", "X"], "helped, did not help (lowered), dismissed and listed again with X"),
    ("internals-120x40", (120, 40), ["down", "i"], "i shows the detector's own fields under each plot"),
    ("explain-120x40", (120, 40), ["e"], "e: the diagnosis explained, rendered as Markdown, citing KB entries"),
    ("help-80x24", (80, 24), ["question_mark"], "? lists every key, what strength and the marks mean"),
]


async def shoot(name: str, size: tuple[int, int], keys: list[str], kb, out: Path, notes: Path) -> Path:
    from tui.app import AdvisorApp

    notes.unlink(missing_ok=True)
    app = AdvisorApp(notes_path=notes, kb=kb)
    async with app.run_test(size=size) as pilot:
        main = app.main
        deadline = time.monotonic() + 120
        while main.generation < 1 and main.error is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        if main.error:
            raise SystemExit(f"screenshots: the demo did not open: {main.error}")
        for key in keys:
            gen = main.generation
            await pilot.press(key)
            await app.workers.wait_for_complete()
            if key in "hux" and len(key) == 1:  # marks re-rank in a worker
                while main.generation == gen and time.monotonic() < deadline:
                    await pilot.pause(0.05)
            await pilot.pause(0.2)
        if keys and keys[-1] == "e":
            screen = app.screen
            while time.monotonic() < deadline and (not getattr(screen, "text", "") or screen.text == "*writing…*"):
                await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        app.clear_notifications()
        for box in app.screen.query("Input"):
            box.cursor_blink = False
        await pilot.pause(0.3)
        svg = out / f"{name}.svg"
        app.save_screenshot(filename=svg.name, path=str(out))
    png = svg.with_suffix(".png")
    import cairosvg

    # the SVG asks for Fira Code from the web; cairosvg fetches nothing, so name a local monospace font
    text = svg.read_text(encoding="utf-8").replace('font-family: Fira Code, monospace', f"font-family: {FONT}, monospace")
    text = text.replace('font-family: arial', f"font-family: {FONT}")
    cairosvg.svg2png(bytestring=text.encode("utf-8"), write_to=str(png), output_width=size[0] * 10)
    svg.unlink()
    return png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="KB file (default: $TRAIN_ADVISOR_DB or the user data dir; built if missing)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--only", nargs="*", help="names of the shots to make")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TRAIN_ADVISOR_LLM_BACKEND"] = "none"  # the offline composer: the same text every time
    from kb import KnowledgeBase
    from tui.session import LockedKB

    kb = LockedKB(KnowledgeBase(args.db).ensure_built())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, keys, what in SHOTS:
            if args.only and name not in args.only:
                continue
            png = asyncio.run(shoot(name, size, keys, kb, out, Path(tmp) / "notes.db"))
            print(f"{png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}: {what}", file=sys.stderr)


if __name__ == "__main__":
    main()
