"""``ov3d-eval``: segment labelled scans with their class names as queries and score them.

    ov3d-eval --scene ../shared/data/scannet/scene0000_00.npz [B.npz ... | FOLDER] [--checkpoint CKPT] --json
    ov3d-eval --scene SCANS... --mode single [--synonyms builtin|FILE] [--vocabulary on|off] --json

Prints one JSON object. Top level: the *dataset*'s metrics -- from the confusion matrices summed
over all scans (the ScanNet benchmark way; one scan: that scan's) -- miou, macc, fmiou, fmacc
(percent, GGP on), miou_raw, macc_raw, fmiou_raw, fmacc_raw (GGP off), per_class_iou (percent, GGP
on; null = class absent), classes_present, points, labeled_points, voxels, seconds (process + one
20-class query, summed); ``dataset`` holds the same again, ``scenes`` each scan's own result (with
its ``scene`` path and ``process_timings``), plus provenance (checkpoint, device, weights).
Closed set: the class names are the queries with no background candidates and no vocabulary
(the benchmark protocol); f-metrics drop wall, floor and other furniture from the queries and
ignore their ground-truth points.

``--mode single`` (closed is the default) adds ``single`` (top level, dataset and each scan): each
class present asked *alone* with the node's default decision (its default negatives, background
and vocabulary switch, and the model's calibrated one-query rule): miou / fmiou (mean single-query
IoU), per_class_iou, per_name_iou, closed_miou_same_classes, and ``decision`` (what was used);
see :mod:`ov3d_ros.eval.single`. ``--vocabulary on|off`` overrides the node's vocabulary switch,
``--rule-exclude / --rule-alias / --rule-margin`` the model's rule. ``--synonyms builtin|FILE``
asks classes by other names (:mod:`ov3d_ros.eval.synonyms`), in both modes.
``--render OUT.png`` draws ground truth and prediction side by side, top-down (one image per scan,
named OUT_<scan>.png when there are several).

Exit status: 0 on success, 2 when a scene, the model or an option cannot be used (the message says
why; with ``--json`` it is also printed as ``{"error": ...}``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ov3d_ros.core.checkpoint import CheckpointError
from ov3d_ros.core.query import QueryRule
from ov3d_ros.core.segmenter import DeviceUnavailableError, InputFeatureError, Segmenter
from ov3d_ros.core.text import TextEncoderError
from ov3d_ros.core.vocabulary import VocabularyError
from ov3d_ros.eval.closed import closed_metrics, closed_scene, predict  # noqa: F401 - predict: public API
from ov3d_ros.eval.metrics import restrict_classes
from ov3d_ros.eval.scannet20 import CLASS_COLORS, CLASS_SETS, FOREGROUND_EXCLUDED, nyu40_to_class_index
from ov3d_ros.eval.single import node_default_query, single_metrics, single_scene
from ov3d_ros.eval.synonyms import SynonymsError, load_synonyms, query_names
from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.files import SUFFIXES


class EvalInputError(ValueError):
    """A scene that cannot be evaluated (no labels, unknown label set, no scan in a folder)."""


def expand_scenes(paths: list[str | Path]) -> list[Path]:
    """``--scene`` arguments -> scan files: a file as given, a folder's scan files (sorted, not
    recursive); duplicates dropped. Raises EvalInputError for a folder without scans."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise EvalInputError(f"{path}: no {'/'.join(SUFFIXES)} scans in this folder")
            out.extend(found)
        else:
            out.append(path)
    return list(dict.fromkeys(out))


def scene_truth(scan, class_set: str = "scannet20") -> np.ndarray:
    """(N,) class index per point (-1 = unlabelled) of a labelled scan."""
    if scan.labels is None:
        raise EvalInputError("the scene has no per-point semantic labels (a ScanNet npz needs 'sem_nyu40')")
    if class_set not in CLASS_SETS:
        raise EvalInputError(f"unknown class set {class_set!r}; known: {', '.join(CLASS_SETS)}")
    return nyu40_to_class_index(scan.labels)


def evaluate_scene(
    segmenter: Segmenter,
    scan,
    class_set: str = "scannet20",
    excluded: tuple[str, ...] = FOREGROUND_EXCLUDED,
    names_for: dict[str, tuple[str, ...]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Closed-set evaluation of one scan (all / foreground classes x GGP on / off).

    Returns the JSON-ready result and the arrays: gt, pred (per point), class_names, the four
    confusion matrices (``confusions``, to sum over a dataset) and the processed cloud.
    """
    gt = scene_truth(scan, class_set)
    class_names = CLASS_SETS[class_set]
    _, fg_names = restrict_classes(gt, class_names, excluded)
    start = time.perf_counter()
    processed = segmenter.process(scan)
    confusions, pred = closed_scene(segmenter, processed, gt, class_names, excluded, names_for)
    seconds = time.perf_counter() - start  # process + the four closed-set queries
    result = {
        **closed_metrics(confusions, class_names, fg_names),
        "points": len(scan),
        "voxels": processed.num_voxels,
        "ggp": {**segmenter.config.ggp.record(), "calibrated": segmenter.ggp_calibrated},
        "seconds": round(seconds, 3),
        "process_timings": {k: round(v, 4) for k, v in processed.timings.items()},
    }
    arrays = {
        "gt": gt,
        "pred": pred,
        "class_names": np.array(class_names),
        "confusions": confusions,
        "processed": processed,
    }
    return result, arrays


def evaluate_dataset(
    segmenter: Segmenter,
    scenes: list[tuple[str, Any]],
    class_set: str = "scannet20",
    *,
    mode: str = "closed",
    synonyms: dict[str, tuple[str, ...]] | None = None,
    vocabulary: bool | None = None,
    excluded: tuple[str, ...] = FOREGROUND_EXCLUDED,
    keep_arrays: bool = False,
    rule: QueryRule | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate (name, Scan) pairs: each scan's result and the dataset's from the summed counts
    (module doc). Returns (dataset result with ``scenes``, per-scan arrays when ``keep_arrays``).
    ``rule``: the single queries' one-query rule (None: the model's calibrated one)."""
    if mode not in ("closed", "single"):
        raise EvalInputError(f"mode must be 'closed' or 'single', got {mode!r}")
    if not scenes:
        raise EvalInputError("no scenes to evaluate")
    if class_set not in CLASS_SETS:
        raise EvalInputError(f"unknown class set {class_set!r}; known: {', '.join(CLASS_SETS)}")
    class_names = CLASS_SETS[class_set]
    truths = [scene_truth(scan, class_set) for _, scan in scenes]
    _, fg_names = restrict_classes(truths[0], class_names, excluded)
    names_for = query_names(class_names, synonyms)
    present = tuple(c for i, c in enumerate(class_names) if any((gt == i).any() for gt in truths))
    rule = segmenter.config.query_rule if rule is None else rule
    results, kept, confusions, counts = [], [], None, None
    for (name, scan), gt in zip(scenes, truths):
        result, arrays = evaluate_scene(segmenter, scan, class_set, excluded, names_for)
        result = {"scene": str(name), **result}
        confusions = (
            arrays["confusions"]
            if confusions is None
            else {k: confusions[k] + v for k, v in arrays["confusions"].items()}
        )
        if mode == "single":
            scene_counts = single_scene(
                segmenter, arrays["processed"], gt, class_names, present, names_for, vocabulary, rule
            )
            counts = scene_counts if counts is None else counts + scene_counts
            result["single"] = single_metrics(
                scene_counts, tuple(result["classes_present"]), excluded, result["per_class_iou"]
            )
        arrays.pop("processed")
        results.append(result)
        kept.append(arrays if keep_arrays else {})
    dataset: dict[str, Any] = {
        **closed_metrics(confusions, class_names, fg_names),
        "num_scenes": len(results),
        "points": sum(r["points"] for r in results),
        "voxels": sum(r["voxels"] for r in results),
        "ggp": results[0]["ggp"],
        "seconds": round(sum(r["seconds"] for r in results), 3),
    }
    if mode == "single":
        dataset["single"] = single_metrics(counts, present, excluded, dataset["per_class_iou"])
        dataset["single"]["decision"] = decision_record(segmenter, vocabulary, rule)
    top = {**dataset, "mode": mode, "dataset": dataset, "scenes": results}
    if synonyms:
        top["synonyms"] = {cls: list(names) for cls, names in synonyms.items()}
    if len(results) == 1:
        top["process_timings"] = results[0]["process_timings"]
    return top, kept


def decision_record(segmenter: Segmenter, vocabulary: bool | None, rule: QueryRule | None = None) -> dict[str, Any]:
    """What a single query competed against (the node's defaults, the rule -- None: the
    segmenter's --, the vocabulary)."""
    rule = segmenter.config.query_rule if rule is None else rule
    example = node_default_query("x", vocabulary)
    record = {
        "negatives": list(example.negatives),
        "background": example.background,
        "vocabulary": example.uses_vocabulary,
    }
    if example.uses_vocabulary:
        record.update(
            rule=rule.record(),
            rule_calibrated=segmenter.rule_is_calibrated(rule),
            vocabulary_file=segmenter.vocabulary.source,
            vocabulary_names=len(segmenter.vocabulary),
        )
    return record


def render_comparison(
    points: np.ndarray, gt: np.ndarray, pred: np.ndarray, class_names, path: str | Path, title: str = ""
) -> Path:
    """Top-down scatter of ground truth and prediction, side by side, one colour per class."""
    return render_panels(points, [("ground truth", gt), ("prediction", pred)], class_names, path, title)


def render_panels(points: np.ndarray, panels, class_names, path: str | Path, title: str = "") -> Path:
    """Top-down scatters of ``points``, one panel per ``(title, (N,) class ids)``; -1 is grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    palette = np.array([(*(c / 255.0 for c in rgb), 1.0) for rgb in CLASS_COLORS])
    palette = palette[np.arange(len(class_names)) % len(palette)]
    grey = np.array([0.88, 0.88, 0.88, 1.0])
    order = np.argsort(points[:, 2])  # higher points drawn last, as seen from above

    def colors(ids: np.ndarray) -> np.ndarray:
        out = np.tile(grey, (len(ids), 1))
        valid = ids >= 0
        out[valid] = palette[ids[valid]]
        return out

    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 7), constrained_layout=True)
    for ax, (name, ids) in zip(np.atleast_1d(axes), panels):
        ax.scatter(points[order, 0], points[order, 1], c=colors(ids[order]), s=0.4, linewidths=0)
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    present = sorted(set(int(i) for i in np.unique(np.concatenate([ids for _, ids in panels])) if i >= 0))
    handles = [Patch(color=palette[i], label=str(class_names[i])) for i in present]
    handles.append(Patch(color=grey, label="ignored / none"))
    fig.legend(handles=handles, loc="lower center", ncol=min(10, len(handles)), fontsize=8, bbox_to_anchor=(0.5, -0.06))
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _rule_value(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov3d-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scene",
        required=True,
        nargs="+",
        help="labelled scans (ScanNet npz layout, or scan files with labels) or folders of them",
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the packaged model)")
    parser.add_argument("--classes", default="scannet20", choices=sorted(CLASS_SETS), help="class set used as queries")
    parser.add_argument(
        "--mode",
        default="closed",
        choices=("closed", "single"),
        help="closed: all class names compete (benchmark); single: also each class asked alone",
    )
    parser.add_argument(
        "--synonyms",
        default=None,
        metavar="builtin|FILE",
        help="ask classes by other names: the built-in table or a YAML/JSON file {class: [names]}",
    )
    parser.add_argument(
        "--vocabulary",
        default="node",
        choices=("node", "on", "off"),
        help="single mode: the competing vocabulary as the node's default, or forced on / off",
    )
    parser.add_argument(
        "--rule-exclude", type=float, default=None, help="override the model's rule: leave out at cosine >="
    )
    parser.add_argument(
        "--rule-alias",
        type=_rule_value,
        default=argparse.SUPPRESS,
        help="override the model's rule: count as the query at cosine >= (none: never)",
    )
    parser.add_argument("--rule-margin", type=float, default=None, help="override the model's rule: vocabulary margin")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--render", default=None, metavar="OUT.png", help="write a GT vs prediction top-down image")
    parser.add_argument(
        "--allow-untrained", action="store_true", help="accept a checkpoint marked untrained (plumbing checks only)"
    )
    return parser


def _rule(args: argparse.Namespace, model_rule: QueryRule) -> QueryRule:
    """The model's one-query rule with the fields ``--rule-*`` give replaced."""
    changes = {
        key: value for key, value in (("exclude", args.rule_exclude), ("margin", args.rule_margin)) if value is not None
    }
    if hasattr(args, "rule_alias"):
        changes["alias"] = args.rule_alias
    return replace(model_rule, **changes)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    vocabulary = {"node": None, "on": True, "off": False}[args.vocabulary]
    try:
        from ov3d_ros.io.files import load_scan

        synonyms = load_synonyms(args.synonyms, CLASS_SETS[args.classes]) if args.synonyms else None
        paths = expand_scenes(args.scene)
        load_start = time.perf_counter()
        segmenter = Segmenter.from_checkpoint(args.checkpoint, device=args.device, allow_untrained=args.allow_untrained)
        rule = _rule(args, segmenter.config.query_rule)
        scenes = [(str(path), load_scan(path)) for path in paths]
        load_seconds = time.perf_counter() - load_start
        result, arrays = evaluate_dataset(
            segmenter,
            scenes,
            args.classes,
            mode=args.mode,
            synonyms=synonyms,
            vocabulary=vocabulary,
            keep_arrays=bool(args.render),
            rule=rule,
        )
    except (
        CheckpointError,
        CloudFormatError,
        DeviceUnavailableError,
        EvalInputError,
        FileNotFoundError,
        InputFeatureError,
        SynonymsError,
        TextEncoderError,
        VocabularyError,
        ValueError,
    ) as exc:
        message = f"{type(exc).__name__}: {exc}"
        if args.json:
            print(json.dumps({"error": message}))
        print(f"ov3d-eval: {message}", file=sys.stderr)
        return 2
    result.update(
        scene=scenes[0][0] if len(scenes) == 1 else [name for name, _ in scenes],
        checkpoint=str(args.checkpoint) if args.checkpoint else "packaged default",
        weights="trained" if segmenter.metadata.trained else "untrained (plumbing only: metrics are meaningless)",
        text_encoder=segmenter.metadata.text_space.encoder_id,
        device=str(segmenter.device),
        load_seconds=round(load_seconds, 3),
    )
    if args.render:
        renders = []
        for (name, scan), scene_arrays, scene_result in zip(scenes, arrays, result["scenes"]):
            out = Path(args.render)
            if len(scenes) > 1:
                out = out.with_name(f"{out.stem}_{Path(name).stem}{out.suffix}")
            title = f"{Path(name).stem}: mIoU {scene_result['miou']}% (GGP on)"
            if not segmenter.metadata.trained:
                title += " -- UNTRAINED weights, plumbing only"
            renders.append(
                str(
                    render_comparison(
                        scan.points, scene_arrays["gt"], scene_arrays["pred"], scene_arrays["class_names"], out, title
                    )
                )
            )
        result["render"] = renders[0] if len(renders) == 1 else renders
    if args.json:
        print(json.dumps(result))
    else:
        _print_text(result, segmenter)
    return 0


def _print_text(result: dict[str, Any], segmenter: Segmenter) -> None:
    if not segmenter.metadata.trained:
        print(f"WARNING: {result['weights']}")
    rows = [("dataset" if len(result["scenes"]) > 1 else result["scenes"][0]["scene"], result)]
    if len(result["scenes"]) > 1:
        rows += [(r["scene"], r) for r in result["scenes"]]
    for name, r in rows:
        print(
            f"{name}: mIoU {r['miou']}  mAcc {r['macc']}  f-mIoU {r['fmiou']}  f-mAcc {r['fmacc']}"
            f"  (GGP off: mIoU {r['miou_raw']}  f-mIoU {r['fmiou_raw']})  {r['seconds']} s"
        )
        if "single" in r:
            print(
                f"  single query: mean IoU {r['single']['miou']}  f-mean {r['single']['fmiou']}"
                f"  (closed set, same classes: {r['single'].get('closed_miou_same_classes')})"
            )
    single = result.get("single", {}).get("per_class_iou", {})
    for name, iou in result["per_class_iou"].items():
        if iou is not None:
            extra = f"   alone {single[name]:6.2f}" if single.get(name) is not None else ""
            print(f"  {name:<16} {iou:6.2f}{extra}")
    if "render" in result:
        print(f"render: {result['render']}")


if __name__ == "__main__":
    sys.exit(main())
