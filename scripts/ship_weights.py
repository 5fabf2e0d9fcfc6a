"""Make a run's float model the shipped one: RUN/float/best.pt -> stereokit/weights/NAME.pt + NAME.json.

    python scripts/ship_weights.py runs/shipped [--name shipped] [--extra card.json]

The manifest records the file's sha256 (checked at every load), the run's config hash, its steps,
validation EPE and wall time; --extra merges measured figures (bench_real's) into it.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from stereokit.config import config_hash
from stereokit.engine.checkpoint import load_checkpoint
from stereokit.runs import read_stage_record, run_config
from stereokit.services.predictors import open_predictor
from stereokit.weights import PACKAGE_DIR, shipped_names, write_weights
from stereokit.weights.check import check_set_epe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", default="shipped")
    parser.add_argument("--extra", type=Path, help="a JSON object of measured figures to add to the manifest")
    args = parser.parse_args()
    cfg = run_config(args.run)
    best = load_checkpoint(args.run / "float" / "best.pt")
    log = [json.loads(line) for line in (args.run / "float" / "log.jsonl").read_text().splitlines() if line.strip()]
    vals = [e for e in log if "val" in e]
    best_val = min(vals, key=lambda e: e["val"]["epe"]) if vals else None
    record = read_stage_record(args.run, "float")
    card = {
        "config_hash": config_hash(cfg),
        "source": str(args.run / "float" / "best.pt"),
        "stage_status": record.status if record else "unknown",
        "steps_logged": max((e.get("step", 0) for e in log), default=0),
        "best_val": {"step": best_val["step"], **best_val["val"]} if best_val else None,
        "wall_s": max((e.get("elapsed_s", 0.0) for e in log), default=0.0),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "card": "docs/model_card.md",
    }
    if record and record.details.get("init"):  # a fine-tune or continuation: the weights it started from
        init = dict(record.details["init"])
        if init.get("from") in shipped_names():
            init.pop("path", None)  # a shipped model is named by name and sha256, not this machine's install path
        card["init"] = init
    if args.extra:
        card.update(json.loads(args.extra.read_text()))
    digest = write_weights(PACKAGE_DIR / f"{args.name}.pt", best["model"], cfg, card)
    # the figure every install is held to (tests/weights): the float model on the generated check set
    predictor = open_predictor(args.name, scale=1.0)  # the check set is scored at its own size
    predictor.raw = True  # and on the network's own values: it checks the weights
    card["check_set"] = check_set_epe(lambda left, right: predictor(left, right)[0])
    digest = write_weights(PACKAGE_DIR / f"{args.name}.pt", best["model"], cfg, card)
    print(f"{PACKAGE_DIR / (args.name + '.pt')}: sha256 {digest}")


if __name__ == "__main__":
    main()
