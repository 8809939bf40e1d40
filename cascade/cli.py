"""`cascade` command line: one verb per job, each a thin wrapper over a library function."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Sequence

import click

import plumbing  # noqa: F401  (the offline environment first)
from convert.wrist_pose import TEST_BENT_SHARE
from plumbing.errors import CascadeError, DataError

from cascade.options import BentShareType, ModelsType, ShardType, renamed_option, workers_option


def edge_tolerance_option(fn):
    """--edge-tolerance, the same on every command that reads label polygons."""
    from convert.dataset import EDGE_TOLERANCE, EDGE_TOLERANCE_MIN_PX, MAX_EDGE_TOLERANCE

    return click.option(
        "--edge-tolerance", default=EDGE_TOLERANCE, show_default=True, type=click.FloatRange(0, MAX_EDGE_TOLERANCE),
        help=f"Share of the image side a polygon point may lie past the edge (at least {EDGE_TOLERANCE_MIN_PX:g} px); "
             "such polygons are cut to the image and counted, points farther out are an error.")(fn)


def echo_warnings(clips, oriented=()) -> None:
    """One line each for the label polygons cut to the image edge and the EXIF orientation tags ignored."""
    from convert.dataset import clip_summary
    from convert.images import orientation_summary

    for line in (clip_summary(clips), orientation_summary(list(oriented))):
        if line:
            click.echo(line, err=True)


def user_errors(fn):
    """A mistake in the user's input becomes one line on stderr and exit status 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CascadeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # a folder given for a file, a read-only disk, a full one: the user's to fix
            where = exc.filename if exc.filename is not None else "file system"
            click.echo(f"error: {where}: {exc.strerror or exc}", err=True)
            sys.exit(2)
    return wrapper


class Progress:
    """A progress bar for library functions that report `progress(done, total)`."""

    def __init__(self, label: str):
        self.label, self.bar, self.done = label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cascade-handbones")
def main():
    """Segment the 29 bones of the hand in X-rays with a two-stage ROI cascade.

    Typical order: check-data -> convert -> train-stage1 / train-stage2 -> predict -> validate-submission.
    """


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write train/DCM, train/outputs_json and test/DCM into.")
@click.option("--patients", default=20, show_default=True, type=click.IntRange(1), help="Training patients (2 hands each).")
@click.option("--test-patients", default=0, show_default=True, type=click.IntRange(0), help="Unlabelled test patients.")
@click.option("--bent-share", type=click.FloatRange(0, 1),
              help="Exactly this share of the training images are bent wrists (default: each draws with "
                   "pose.bent_wrist_prob). The real training set: 0.11.")
@click.option("--test-bent-share", type=click.FloatRange(0, 1),
              help="The same for the test images. The real test set: 0.58.")
@click.option("--test-labels", is_flag=True,
              help="Also write the test images' labels, apart from them, into OUT/test_labels/ (to score a "
                   "submission with `cascade evaluate --submission ... --labels`).")
@click.option("--size", default=512, show_default=True, type=click.IntRange(128, 4096), help="Image side in pixels (real data: 2048).")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same files.")
@click.option("--config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Generator config (default configs/synth.yaml).")
@click.argument("overrides", nargs=-1)
@user_errors
def synth(out, patients, test_patients, bent_share, test_bent_share, test_labels, size, seed, config, overrides):
    """Generate look-alike hand radiographs with JSON polygons, in the real dataset's layout.

    OVERRIDES are key=value pairs over the config, e.g. pose.bent_wrist_prob=0.6.
    """
    from synthetic_hands import generate, load_synth_config

    cfg = load_synth_config(config, overrides)
    with Progress("synth") as progress:
        summary = generate(out, patients, test_patients, size=size, seed=seed, cfg=cfg, progress=progress,
                           bent_share=bent_share, test_bent_share=test_bent_share, test_labels=test_labels)
    labels = f" (their labels in {summary['test_labels']})" if summary["test_labels"] else ""
    click.echo(f"wrote {summary['train_images']} training and {summary['test_images']} test images{labels} to {out}")


@main.command("check-data")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Folder holding DCM/ and outputs_json/.")
@workers_option(help="Decoding threads (default: all cores).")
@edge_tolerance_option
@user_errors
def check_data(data, workers, edge_tolerance):
    """Check a labelled dataset: pairing, decodable images, valid polygons, all 29 classes.

    Prints a summary, every problem and every warning (polygons cut to the image edge); exits 1 when there are
    problems, 0 when there are only warnings.
    """
    from convert.check import check_dataset

    with Progress("checking") as progress:
        report = check_dataset(data, workers=workers, progress=progress, edge_tolerance=edge_tolerance)
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@main.command("convert")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Folder holding DCM/ and outputs_json/.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="YOLO-seg dataset folder to write.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2), help="Patient-grouped folds.")
@click.option("--fold", default=0, show_default=True, type=click.IntRange(0), help="Fold used for validation.")
@click.option("--imgsz", default=None, type=click.IntRange(32), help="Resize so the longer side is at most this (default: keep native size).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fold split.")
@click.option("--skip-bad", is_flag=True, help="Drop images with problems (and report them) instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@workers_option(help="Threads (default: all cores).")
@click.option("--region-shape", default="ellipse", show_default=True, type=click.Choice(["ellipse", "box", "none"]),
              help="How the carpal region (class 29, for stage 1 to detect) is drawn; none: the 29 bones only.")
@edge_tolerance_option
@user_errors
def convert_cmd(data, out, folds, fold, imgsz, seed, skip_bad, overwrite, workers, region_shape, edge_tolerance):
    """Convert JSON polygons to a YOLO-seg dataset with a patient-grouped train/val split.

    Writes images/, labels/, data.yaml, folds.json and index.csv into OUT, all at once at the end.
    """
    from convert.carpal_region import RegionConfig
    from convert.yolo import convert_to_yolo

    region = {"region": None} if region_shape == "none" else {"region": RegionConfig(), "region_shape": region_shape}
    with Progress("converting") as progress:
        result = convert_to_yolo(data, out, folds=folds, fold=fold, imgsz=imgsz, seed=seed, skip_bad=skip_bad,
                                 overwrite=overwrite, progress=progress, edge_tolerance=edge_tolerance,
                                 workers=workers, **region)
    for p in result.problems:
        click.echo(f"skipped {p}", err=True)
    echo_warnings(result.clips, result.oriented)
    click.echo(f"wrote {result.counts['train']} train / {result.counts['val']} val images to {result.out} "
               f"(fold {fold} of {folds} held out; {len(result.problems)} problems)")


@main.command("validate-submission")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path),
              help="Test image folder: the image list must match and runs must fit each image's size.")
@click.option("--size", default="2048x2048", show_default=True,
              help="WxH assumed for every image when --images is not given.")
@user_errors
def validate_submission_cmd(file, images, size):
    """Check a submission CSV: header, rows per image, order, class names, RLE syntax and bounds.

    Exits 1 and lists the first problems when the file is not valid.
    """
    from convert.submission import image_sizes, parse_size, validate_submission

    h, w = parse_size(size)
    report = validate_submission(file, image_sizes(images) if images else None, default_hw=(h, w))
    if report.ok:
        click.echo(f"{file}: valid ({report.images} images, {report.rows} rows)")
        return
    for p in report.problems:
        click.echo(f"{file}: {p}", err=True)
    click.echo(f"error: {file} is not a valid submission ({len(report.problems)} problem(s) shown)", err=True)
    sys.exit(1)


def train_command(name: str, data_help: str, config_help: str):
    """train-stage1 / train-stage2: --data, --config and the OVERRIDES, declared once."""
    decorators = (
        # an unknown --flag is passed on as an override, for the config loader to judge
        main.command(name, context_settings={"ignore_unknown_options": True}),
        click.option("--data", required=True, type=click.Path(path_type=Path), help=data_help),
        click.option("--config", type=click.Path(dir_okay=False, exists=True, path_type=Path), help=config_help),
        click.argument("overrides", nargs=-1),
        user_errors,
    )

    def decorate(fn):
        for decorator in reversed(decorators):  # as if stacked above fn in this order
            fn = decorator(fn)
        return fn
    return decorate


@train_command("train-stage1", data_help="YOLO-seg folder written by `cascade convert`.",
               config_help="Stage 1 config (default configs/stage1.yaml; configs/stage1_cpu.yaml for a CPU run).")
def train_stage1_cmd(data, config, overrides):
    """Train the full-hand YOLO segmentation model.

    OVERRIDES are key=value pairs as ultralytics' CLI takes them, e.g. epochs=1 imgsz=128 device=cpu,
    plus model=yolo11s-seg (a size name or a .pt path) and region.margin=0.15.
    """
    from stage1_detect.config import load_stage1_config
    from stage1_detect.train import train_stage1

    run = train_stage1(data, load_stage1_config(config, overrides))
    click.echo(f"stage 1 weights: {run.best}\nrun folder (metrics, config): {run.run_dir}")


@train_command("train-stage2", data_help="Folder holding DCM/ and outputs_json/.",
               config_help="Stage 2 config (default configs/stage2.yaml; configs/stage2_cpu.yaml for a CPU run).")
def train_stage2_cmd(data, config, overrides):
    """Train the carpal-region UNet on native-resolution crops.

    OVERRIDES are key=value pairs, e.g. epochs=1 input_size=128 device=cpu folds_file=yolo/folds.json
    edge_tolerance=0.05 (as --edge-tolerance of check-data).
    Multi-GPU: torchrun --nproc_per_node=4 -m cascade.cli train-stage2 --data ... (see README).
    """
    from stage2_segment.config import load_stage2_config
    from stage2_segment.train import train_stage2

    run = train_stage2(data, load_stage2_config(config, overrides))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from the writing process only
        click.echo(f"stage 2 checkpoint: {run.best}\nrun folder: {run.run_dir}")


@main.command()
@click.option("--stage1", multiple=True, type=click.Path(path_type=Path),
              help="Stage 1 weights (.pt); repeat it for an ensemble (e.g. one per fold) that votes per pixel. "
                   "With --base it only finds the carpal region (optional there).")
@click.option("--base", type=click.Path(path_type=Path),
              help="Any full-hand model's submission for these images: stage 2 is pasted over its masks, and every "
                   "class not pasted keeps its row byte for byte.")
@click.option("--stage2", multiple=True, type=click.Path(path_type=Path),
              help="Stage 2 checkpoint, omitted with --stage1-only; repeat it for an ensemble that averages.")
@click.option("--images", required=True, type=click.Path(path_type=Path), help="Test images (sub-folders are searched).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Submission CSV to write.")
@click.option("--device", default=None, help="cpu, cuda, cuda:0 ... (default: the first GPU if any).")
@click.option("--stage1-only", is_flag=True, help="Write the submission from stage 1 alone.")
@click.option("--paste-file", type=click.Path(path_type=Path),
              help="paste.json from `cascade evaluate`: paste only the classes it proved better.")
@click.option("--tta", is_flag=True, help="Horizontal-flip test-time augmentation in stage 2.")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(1), help="Images per forward pass.")
@click.option("--skip-bad", is_flag=True, help="Leave unreadable images empty and report them instead of stopping.")
@click.option("--shard", default="0/1", show_default=True, type=ShardType(),
              help="i/n: predict every n-th image from the i-th (0-based) on; join parts with merge-submissions.")
@workers_option(help="Threads decoding and encoding images (default: all cores; with several shards on one "
                     "machine, its cores divided among them).")
@user_errors
def predict(images, out, stage1, stage2, base, stage1_only, paste_file, tta, shard, **options):
    """Predict every image and write the RLE submission (atomically), checked as validate-submission would."""
    from cascade.predict import UnreadableImage, run_prediction

    check_predict_options(stage1, stage2, base, stage1_only, paste_file, tta, shard)
    try:
        with Progress("predicting") as progress:
            summary = run_prediction(images, out, stage1 or None, None if stage1_only else stage2, shard=shard,
                                     base=base, paste_file=paste_file, tta_hflip=tta, progress=progress, **options)
    except UnreadableImage as exc:
        raise DataError(exc.path, exc.reason + " (or pass --skip-bad to leave it out)") from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 wrote the submission and reports it
        return
    for p in summary.skipped:
        click.echo(f"skipped (empty masks written) {p}", err=True)
    echo_warnings((), summary.oriented)
    click.echo(summary.describe() + "; the submission passed validate-submission")


def check_predict_options(stage1: Sequence[Path], stage2: Sequence[Path], base: Path | None, stage1_only: bool,
                          paste_file: Path | None, tta: bool, shard: tuple[int, int]) -> None:
    """predict's options that only work together, checked before anything is read."""
    from stage2_segment.distributed import launched_by_torchrun

    if not stage1 and base is None:
        raise click.UsageError("--stage1 is required (or --base, a full-hand submission to paste stage 2 over)")
    if base is not None and stage1_only:
        raise click.UsageError("--stage1-only writes stage 1's own prediction: drop --base, or drop --stage1-only")
    if not stage1_only and not stage2:
        raise click.UsageError("--stage2 is required unless --stage1-only is given")
    if stage1_only and (stage2 or paste_file or tta):
        raise click.UsageError("--stage1-only leaves stage 2 out: drop --stage2, --paste-file and --tta, or drop it")
    if shard != (0, 1) and launched_by_torchrun():
        raise click.UsageError("--shard under torchrun: the launcher's rank and world size shard the images; "
                               "drop --shard")


@main.command("merge-submissions")
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Merged CSV to write.")
@click.option("--images", type=click.Path(path_type=Path), help="Test image folder: the merged file must cover it.")
@user_errors
def merge_submissions_cmd(parts, out, images):
    """Join the parts written by `cascade predict --shard i/n` into one submission, then check it."""
    from convert.submission import merge_submissions

    rows = merge_submissions(parts, out, images)
    click.echo(f"wrote {out} ({rows} rows from {len(parts)} parts)")


@main.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Labelled folder (DCM/ + outputs_json/).")
@click.option("--folds-file", type=click.Path(path_type=Path),
              help="folds.json written by `cascade convert` (needed unless --submission scores every image).")
@renamed_option("--folds", "--folds-file", type=click.Path(path_type=Path))
@click.option("--fold", "folds", multiple=True, type=click.IntRange(0),
              help="Held-out fold to score (default 0). Repeat it, with one --stage1 (and --stage2) per fold in the "
                   "same order, to pool the folds: every image scored by the models that never saw it.")
@click.option("--stage1", multiple=True, type=ModelsType(),
              help="Stage 1 weights (.pt) of the fold; a,b,c (commas) scores their ensemble, as repeated --stage1 "
                   "in predict makes it.")
@click.option("--stage2", multiple=True, type=ModelsType(),
              help="Stage 2 checkpoint of the fold; a,b,c scores their ensemble.")
@click.option("--submission", type=click.Path(path_type=Path), help="Score this submission CSV instead of models.")
@click.option("--labels", type=click.Path(path_type=Path),
              help="With --submission: the labels kept apart from --data's images (<patient>/<image>.json, e.g. "
                   "synth's test_labels/) instead of --data/outputs_json.")
@click.option("--base", type=click.Path(path_type=Path),
              help="A full-hand model's submission holding the fold's images: scores it and stage 2 pasted over it "
                   "(--stage1 then optional, for the carpal region only); paste.json is chosen against it.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Report folder.")
@click.option("--device", default=None, help="cpu, cuda, cuda:0 ...")
@click.option("--tta", is_flag=True, help="Horizontal-flip test-time augmentation in stage 2.")
@click.option("--bent-share", default=str(TEST_BENT_SHARE), show_default=True, type=BentShareType(),
              help="Share of bent wrists to weigh the held-out images to (the real test set's); 'none' for a plain "
                   "mean. The paste plan and its settings are chosen on this mix.")
@edge_tolerance_option
@user_errors
def evaluate(out, **options):
    """Per-class Dice at native resolution on held-out patients: stage 1 alone and the cascade.

    Writes dice.csv, pose.csv (straight vs bent wrists), dice.md, dice.png and paste.json (the classes the
    cascade improved) into OUT.
    """
    from cascade.evaluate import run_evaluation
    from plumbing.run_lock import run_lock

    check_evaluate_options(**options)
    with run_lock(out, note=lambda text: click.echo(text, err=True)):  # one evaluate writes a report folder
        with Progress("evaluating") as progress:
            result = run_evaluation(out=out, progress=progress, **options)
        echo_warnings(result.scores.clips, result.scores.oriented)
        paths = result.save(out)
    click.echo(paths["markdown"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def check_evaluate_options(folds_file: Path | None, folds: Sequence[int], stage1: Sequence, stage2: Sequence,
                           submission: Path | None, labels: Path | None, base: Path | None, tta: bool,
                           **_) -> None:
    """evaluate's options that only work together (the library's rule, in the flags' words), checked before
    anything is read."""
    from cascade.evaluate import check_combination

    try:
        check_combination(tuple(folds) or (0,), folds_file, stage1, stage2, submission, labels, base, tta,
                          name=lambda parameter: "--" + parameter.replace("_", "-"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.option("--image", required=True, type=click.Path(path_type=Path), help="Radiograph to draw on.")
@click.option("--stage1", required=True, type=click.Path(path_type=Path), help="Stage 1 weights (.pt).")
@click.option("--stage2", type=click.Path(path_type=Path), help="Stage 2 checkpoint (adds a stage 1 vs cascade panel).")
@click.option("--labels", type=click.Path(path_type=Path), help="The image's JSON, to draw the ground truth in white.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--device", default=None, help="cpu, cuda, cuda:0 ...")
@user_errors
def visualize(image, stage1, stage2, labels, out, device):
    """Draw predicted outlines, ground truth and the carpal region over an image, as a PNG."""
    from cascade.visualize import visualize_image

    for path in visualize_image(image, out, stage1, stage2, labels, device):
        click.echo(f"wrote {path}")


@main.command()
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for everything the demo writes.")
@click.option("--config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Demo config (default configs/demo.yaml).")
@click.argument("overrides", nargs=-1)
@user_errors
def demo(out, config, overrides):
    """Run the whole tool on generated data, end to end, and print where each output is."""
    from cascade.demo import load_demo_config, run_demo

    run_demo(out, load_demo_config(config, overrides), echo=click.echo)


if __name__ == "__main__":
    main()
