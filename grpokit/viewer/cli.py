"""`grpokit view RUN_DIR`: write RUN_DIR/view.html (self-contained) or serve it (--serve)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpokit.viewer.page import DEFAULT_MAX_MB


def parse_steps(text: str) -> list[int]:
    """"5,10,20-25" -> [5, 10, 20, 21, ..., 25]; a clear error for anything else."""
    steps: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise argparse.ArgumentTypeError(f"--steps: {part!r} is not a step or a range like 20-25")
        steps.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(steps))


def token_decoder(folder: Path, tokenizer: str = ""):
    """id -> text with the run's tokenizer (RUN_DIR/model/tokenizer.json, or `tokenizer`: a
    tokenizer.json or a folder holding one), or None when there is none (tokens show as ids)."""
    from tokenizers import Tokenizer

    path = Path(tokenizer) if tokenizer else folder / "model"
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        if tokenizer:
            raise SystemExit(f"grpokit view: --tokenizer: {path} not found")
        return None
    tok = Tokenizer.from_file(str(path))
    return lambda i: tok.decode([i], skip_special_tokens=False)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="grpokit view", description="See a run's metrics and completions in a browser.")
    ap.add_argument("run_dir", help="a run folder (holds metrics.jsonl, and rollouts.jsonl for completions)")
    ap.add_argument("--out", default="", help="where to write the page (default RUN_DIR/view.html)")
    ap.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                    help="completions put in the file, in MB of the rollouts log: all steps when they fit, else "
                         "the first, the last and evenly spaced ones (the rest: --serve)")
    ap.add_argument("--steps", type=parse_steps, default=None, help="steps whose completions go into the file, e.g. 1,50,100-110")
    ap.add_argument("--tokenizer", default="", help="tokenizer.json (or its folder) for token texts (default RUN_DIR/model)")
    ap.add_argument("--serve", action="store_true", help="serve on 127.0.0.1 instead, loading each step when shown")
    ap.add_argument("--port", type=int, default=8765, help="port for --serve (0 = any free one)")
    return ap


def main(argv: list[str]) -> int:
    from grpokit.viewer.data import RunFolderError, load_run
    from grpokit.viewer.page import write_page

    args = build_parser().parse_args(argv)
    folder = Path(args.run_dir)
    try:
        run = load_run(folder)
        decode = token_decoder(folder, args.tokenizer)
        if args.serve:
            return serve(run, args.port, decode)
        path, steps = write_page(run, Path(args.out) if args.out else folder / "view.html", max_mb=args.max_mb,
                                 steps=args.steps, decode=decode)
    except (RunFolderError, ValueError) as exc:
        print(f"grpokit view: {exc}", file=sys.stderr)
        return 2
    held = f"completions of {len(steps)} of {len(run.offsets)} steps" if run.offsets else "no rollouts.jsonl: metrics only"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {held}). Open it in a browser: file://{path.resolve()}")
    return 0


def serve(run, port: int, decode) -> int:
    from grpokit.viewer.server import make_server

    server = make_server(run, port=port, decode=decode)
    print(f"serving {run.folder} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
