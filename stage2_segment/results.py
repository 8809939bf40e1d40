"""What a stage 2 run leaves to watch and compare: results.csv (one row per epoch), results.png (its curves)
and, only when the tensorboard package is installed, TensorBoard scalars, all in the run folder.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from plumbing.atomic import atomic_path, write_text
from plumbing.errors import DataError

RESULTS_FILE = "results.csv"
PLOT_FILE = "results.png"
SCORE = "val_carpal_dice"  # the column best.pt is chosen by
DICE_PREFIX = "dice/"      # one column per trained class: dice/<class>
BASE_COLUMNS = ["epoch", "train_loss", "lr", "epoch_s", "train_s", "samples_per_s", "data_wait_s", "val_s",
                "val_mean_dice", SCORE, "val_carpal_straight", "val_carpal_bent", "val_bent_images",
                "peak_gpu_mb"]  # empty on the CPU
WEAKEST = 3                # classes drawn apart in the plot: the lowest Dice at the latest validation
FIGURE_INCHES = (12.0, 4.5)
FIGURE_DPI = 100


def columns(train_classes: list[str]) -> list[str]:
    return BASE_COLUMNS + [DICE_PREFIX + c for c in train_classes]


def _value(text: str):
    """A cell read back: '' (an epoch without validation) -> None, else a number."""
    if text in (None, ""):
        return None
    number = float(text)
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


class Results:
    """results.csv (one row per epoch) and results.png (its curves), both brought up to date after each epoch.
    The whole (small) table is rewritten through a temporary file each time, so neither a reader nor an
    interruption ever meets half a row, and every finished epoch's row survives an interruption."""

    def __init__(self, run_dir: Path, train_classes: list[str]):
        self.path = Path(run_dir) / RESULTS_FILE
        self.plot = Path(run_dir) / PLOT_FILE
        self.columns = columns(train_classes)
        self.rows: list[dict] = []

    def start(self, after_epoch: int, saved: list[dict] | None = None) -> None:
        """Keep the rows of epochs 1..after_epoch (a resume continues the table from its checkpoint's epoch;
        rows an interrupted run wrote after that checkpoint are dropped, since those epochs run again);
        after_epoch=0 starts a new table. `saved`: the rows the resumed checkpoint holds, which win over the
        file (a run killed after its checkpoint but before its row lost that row from the file only)."""
        if after_epoch <= 0:
            self.rows = []
        else:
            rows = [{k: r.get(k) for k in self.columns} for r in saved] if saved is not None else self._read()
            self.rows = [r for r in rows if r["epoch"] <= after_epoch]
        if self.path.is_file() or self.rows:
            self._write()
        if self.rows:  # the plot of the rows kept (a killed run may have died before drawing its last row)
            plot_results(self.rows, self.plot, self.best())
        else:
            self.plot.unlink(missing_ok=True)  # a stale plot of another run must not pass for this one's

    def add(self, row: dict) -> None:
        """One finished epoch: its row appended to the table, the plot redrawn."""
        self.rows.append({k: row.get(k) for k in self.columns})
        self._write()
        plot_results(self.rows, self.plot, self.best())

    def with_row(self, row: dict) -> list[dict]:
        """The table's rows with one more epoch's, as add() would make them (the table itself unchanged)."""
        return [*self.rows, {k: row.get(k) for k in self.columns}]

    def best(self) -> dict | None:
        return best_row(self.rows)

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "epoch" not in reader.fieldnames:
                raise DataError(self.path, "is not a stage 2 results table (no epoch column); "
                                           "delete it or train with resume=false")
            rows = []
            for line, raw in enumerate(reader, start=2):
                try:
                    rows.append({k: _value(raw.get(k)) for k in self.columns})
                except ValueError:
                    raise DataError(self.path, f"line {line} holds a value that is not a number; "
                                               "delete it or train with resume=false") from None
        return [r for r in rows if isinstance(r["epoch"], int)]

    def _write(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        write_text(self.path, out.getvalue())


def best_row(rows: list[dict]) -> dict | None:
    """The row best.pt was taken from: the first epoch with the highest score (later ties do not replace it)."""
    scored = [r for r in rows if isinstance(r.get(SCORE), (int, float)) and not math.isnan(r[SCORE])]
    return max(scored, key=lambda r: r[SCORE]) if scored else None  # max keeps the first of equals


def plot_results(rows: list[dict], path: str | Path, best: dict | None = None) -> Path:
    """Draw loss and validation Dice (mean, carpal, the weakest classes) against epoch to a PNG, the best epoch
    marked. Matplotlib's Agg canvas is used directly: no display, and the process's pyplot backend untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    loss_ax, dice_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in rows]
    loss_ax.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train loss")
    loss_ax.set(title="training loss (Dice + BCE)", xlabel="epoch", ylabel="loss")

    validated = [r for r in rows if r.get(SCORE) is not None]
    ve = [r["epoch"] for r in validated]
    dice_ax.plot(ve, [r["val_mean_dice"] for r in validated], marker=".", label="mean, all classes")
    dice_ax.plot(ve, [r[SCORE] for r in validated], marker=".", linewidth=2.5, label="carpal mean (the score)")
    for name in _weakest(validated):
        dice_ax.plot(ve, [r[name] for r in validated], linestyle="--", linewidth=1,
                     label=name.removeprefix(DICE_PREFIX))
    dice_ax.set(title="validation Dice", xlabel="epoch", ylabel="Dice")
    if best is not None:
        for ax in (loss_ax, dice_ax):
            ax.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1)
        dice_ax.plot([best["epoch"]], [best[SCORE]], marker="*", markersize=14, color="gold",
                     markeredgecolor="black", linestyle="none", label=f"best: epoch {best['epoch']}, {best[SCORE]:.4f}")
    for ax in (loss_ax, dice_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _weakest(validated: list[dict]) -> list[str]:
    """The class columns lowest at the latest validation: the ones still to watch."""
    if not validated:
        return []
    latest = validated[-1]
    dice = [(v, k) for k, v in latest.items()
            if k.startswith(DICE_PREFIX) and isinstance(v, (int, float)) and not math.isnan(v)]
    return [k for _, k in sorted(dice)[:WEAKEST]]


class TensorBoardScalars:
    """Each epoch's numbers as TensorBoard scalars in the run folder, only when the tensorboard package is
    installed (it is no dependency of this project); without it this does nothing, silently."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard absent: the CSV and the plot are the record
            return
        self.writer = SummaryWriter(log_dir=str(run_dir))

    @property
    def used(self) -> bool:
        return self.writer is not None

    def add(self, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(key if "/" in key else f"stage2/{key}", value, row["epoch"])
        self.writer.flush()  # an interrupted run keeps what was logged

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
