"""Plots, the HTML evaluation report and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from astroclassify.evaluation.calibration import reliability_bins, softmax
from astroclassify.evaluation.metrics import with_interval

__all__ = ["write_eval_plots", "write_html_report", "write_training_plot"]


# Neutral grey text and lines on a transparent background read on a white page (a model card
# on a code host) and on the web app's dark theme alike.
INK = "#8a8f9c"
PLOT_STYLE = {
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.facecolor": "none",
    "savefig.transparent": True,
    "legend.framealpha": 0.0,
    "grid.color": INK,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    plt.rcParams.update(PLOT_STYLE)
    return plt


def write_training_plot(history: list[dict], path: Path) -> None:
    """Losses above, scores below (one column reads on a phone): whatever each epoch's row recorded.

    A single-task run records ``train_loss``/``val_loss`` and accuracies; a shared encoder
    (training/multitask.py) one loss and validation scores per part (a head's classes or tags).
    """
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    keys = list(dict.fromkeys(k for h in history for k in h))
    names = {"train_loss": "train", "val_loss": "validation", "train_accuracy": "train accuracy"}
    names |= {"val_accuracy": "validation accuracy", "val_macro_f1": "validation macro-F1"}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True)
    for k in keys:
        if "loss" in k:
            ax1.plot(epochs, [h.get(k, np.nan) for h in history], label=names.get(k, k.removeprefix("loss_")))
        elif k in ("train_accuracy", "val_accuracy") or k.startswith("val_"):
            style = "--" if k == "val_macro_f1" else "-"
            ax2.plot(epochs, [h.get(k, np.nan) for h in history], label=names.get(k, k), ls=style)
    ax1.set(ylabel="loss", title="Loss")
    ax2.set(xlabel="epoch", ylim=(0, 1.02), title="Scores")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_eval_plots(
    metrics: dict,
    probs: np.ndarray,
    y: np.ndarray,
    logits: np.ndarray | None,
    out: Path,
    *,
    title: str,
    prefix: str = "",
) -> dict[str, Path]:
    """Confusion matrix and reliability diagram PNGs (``<prefix>confusion_matrix.png`` ...); returns their paths."""
    plt = _plt()
    labels = metrics["confusion_matrix"]["labels"]
    cm = np.array(metrics["confusion_matrix"]["matrix"])
    # Sized so that its numbers and labels stay legible when a phone shows it 350 px wide.
    fig, ax = plt.subplots(figsize=(0.75 * len(labels) + 2.4, 0.7 * len(labels) + 2.1))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=12, color="white" if v > cm.max() / 2 else "black")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=f"{title}\naccuracy {with_interval(metrics['accuracy'], metrics.get('ci', {}).get('accuracy'))}, "
        f"macro-F1 {with_interval(metrics['macro_f1'], metrics.get('ci', {}).get('macro_f1'))}",
    )
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    paths = {"confusion": out / f"{prefix}confusion_matrix.png", "reliability": out / f"{prefix}reliability.png"}
    fig.savefig(paths["confusion"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
    curves = [("calibrated", probs)]
    if logits is not None:
        curves.insert(0, ("before temperature scaling", softmax(logits)))
    for name, p in curves:
        conf, acc, count = reliability_bins(p, y, 10)
        keep = count > 0
        ax.plot(conf[keep], acc[keep], marker="o", label=name)
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"Reliability (ECE {metrics['ece']:.3f})",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths["reliability"], dpi=110)
    plt.close(fig)
    return paths


_REPORT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right;vertical-align:middle}
th:first-child,td:first-child{text-align:left}img{max-width:100%}.ci{color:#666}
td.thumb{padding:2px}td.thumb img{width:96px;height:96px;object-fit:contain;background:#000;display:block}
summary{cursor:pointer}</style></head><body>
<h1>{{ title }}</h1>
<p>{{ m.n }} images &middot; accuracy <b>{{ "%.3f"|format(m.accuracy) }}</b> {{ ci(m.ci.accuracy) }} &middot;
macro-F1 <b>{{ "%.3f"|format(m.macro_f1) }}</b> {{ ci(m.ci.macro_f1) }}
&middot; ECE {{ "%.3f"|format(m.ece) }} {{ ci(m.ci.ece) }} (before temperature scaling {{ "%.3f"|format(m.ece_uncalibrated) }})</p>
<p class="ci">Brackets: 95% intervals, {{ m.ci.method }} ({{ m.ci.n_resamples }} resamples of {{ m.ci.clusters }}).
An independent sample of the same kind of images should score inside them.</p>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>F1 95% interval</th><th>support</th></tr>
{% for label, c in m.per_class.items() %}<tr><td>{{ label }}</td>{% for k in ("precision", "recall", "f1") %}<td>{{ "%.3f"|format(c[k]) if c.support else "–" }}</td>{% endfor %}<td class="ci">{{ ci(c.f1_ci) if c.f1_ci else "–" }}</td><td>{{ c.support }}</td></tr>{% endfor %}
</table>
<h2>Confusion matrix and calibration</h2><img src="{{ confusion }}" alt="confusion matrix"> <img src="{{ reliability }}" alt="reliability diagram">
{% if m.unknown_labels %}<h2>Not scored: labels the model does not know</h2><ul>{% for k, v in m.unknown_labels.items() %}<li>{{ k }}: {{ v }}</li>{% endfor %}</ul>{% endif %}
{% if m.failed %}<h2>Not scored: unreadable files</h2><ul>{% for f in m.failed %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
{% if errors %}<h2>Misclassified ({{ errors|length }}{% if errors|length < n_errors %} most confident of {{ n_errors }}{% endif %})</h2>
<table><tr><th>image</th><th>file</th><th>true</th><th>predicted</th><th>confidence</th></tr>
{% for e in errors %}<tr><td class="thumb">{% if e.thumb %}<img src="{{ e.thumb }}" alt="{{ e.key }}" loading="lazy">{% endif %}</td><td>{{ e.key }}</td><td>{{ e.true }}</td><td>{{ e.predicted }}</td><td>{{ "%.2f"|format(e.confidence) }}</td></tr>{% endfor %}</table>{% endif %}
<details><summary>Raw metrics (JSON)</summary><pre>{{ raw }}</pre></details></body></html>"""

MAX_ERRORS_SHOWN = 100
THUMB_PX = 96


def write_html_report(
    metrics: dict,
    keys: list[str],
    y_true: list[str],
    probs: np.ndarray,
    out: Path,
    *,
    title: str,
    name: str = "report",
    paths: list[Path] | None = None,
) -> Path:
    """``<out>/<name>.html`` with its plots beside it (``<name>-confusion_matrix.png``, ...).

    Each evaluation names its own files (the CLI uses the datasets and split), so scoring a
    model on another dataset no longer overwrites the last report. Misclassified images are
    shown as thumbnails embedded in the page, most confident errors first.
    """
    from jinja2 import Environment

    labels = metrics["confusion_matrix"]["labels"]
    y = np.array([labels.index(t) for t in y_true], dtype=int)
    plots = write_eval_plots(metrics, probs, y, None, out, title=title, prefix=f"{name}-")
    wrong = [
        (i, labels[int(p.argmax())], float(p.max()))
        for i, (t, p) in enumerate(zip(y_true, probs, strict=True))
        if labels[int(p.argmax())] != t
    ]
    wrong.sort(key=lambda e: -e[2])
    errors = [
        {
            "key": keys[i],
            "true": y_true[i],
            "predicted": predicted,
            "confidence": confidence,
            "thumb": _thumb_data_url(paths[i]) if paths else None,
        }
        for i, predicted, confidence in wrong[:MAX_ERRORS_SHOWN]
    ]
    env = Environment(autoescape=True)
    text = env.from_string(_REPORT).render(
        title=title,
        m=metrics,
        errors=errors,
        n_errors=len(wrong),
        ci=lambda interval: f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "",
        confusion=plots["confusion"].name,
        reliability=plots["reliability"].name,
        raw=json.dumps(metrics, indent=1),
    )
    path = out / f"{name}.html"
    path.write_text(text)
    return path


def _thumb_data_url(path: Path) -> str | None:
    """A small JPEG of the image, inline, so the report is one file that can be mailed."""
    import base64
    import io

    from astroclassify.errors import ImageDecodeError
    from astroclassify.imaging.decode import decode_pil

    try:
        img = decode_pil(path, draft_size=THUMB_PX)
    except ImageDecodeError:
        return None
    img.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
