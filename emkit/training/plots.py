"""Images for the tracker: weight histograms, feature maps, prediction overlays.

Every function returns an RGB ``uint8`` ndarray of shape (H, W, 3), which any tracker
logs as an image. Matplotlib runs on the Agg backend.
"""

from __future__ import annotations

import numpy as np


def _figure(rows: int, cols: int, size: float = 2.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * size, rows * size), dpi=72)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def figure_to_array(fig) -> np.ndarray:
    """A rendered Matplotlib figure as an RGB uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def weight_histograms(model, *, max_layers: int = 12) -> np.ndarray:
    """Histograms of the kernels of up to ``max_layers`` layers (thesis HistogramHook).

    Args:
        model: a built Keras model.
        max_layers: draw the kernels of at most this many layers, first ones first.
    """
    kernels = [w for w in model.weights if w.path.endswith("kernel")][:max_layers]
    cols = min(4, max(1, len(kernels)))
    rows = max(1, -(-len(kernels) // cols))
    fig, axes = _figure(rows, cols, 2.5)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, weight in zip(axes.flat, kernels):
        ax.set_axis_on()
        ax.hist(np.asarray(weight.numpy(), dtype=np.float32).ravel(), bins=40, color="tab:blue")
        ax.set_title(weight.path.split("/")[0][:24], fontsize=7)
        ax.tick_params(labelsize=6)
    return figure_to_array(fig)


def feature_maps(model, x: np.ndarray, *, max_layers: int = 6, channels: int = 4) -> np.ndarray:
    """The first ``channels`` feature maps of up to ``max_layers`` conv layers on one input.

    Args:
        model: a functional Keras model.
        x: one input batch of shape (1, Y, X, 1) or (1, Z, Y, X, 1); 3D maps show their
            middle section (thesis LayerVisualizationHook).
    """
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv3D)]
    if len(convs) > max_layers:  # spread over the depth
        convs = [convs[i] for i in np.linspace(0, len(convs) - 1, max_layers).round().astype(int)]
    probe = keras.Model(model.input, [layer.output for layer in convs])
    outputs = probe(x, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    fig, axes = _figure(len(convs), channels, 1.5)
    for row, (layer, out) in enumerate(zip(convs, outputs)):
        maps = keras.ops.convert_to_numpy(out)[0].astype(np.float32)  # bfloat16 under mixed precision
        if maps.ndim == 4:
            maps = maps[maps.shape[0] // 2]
        for c in range(channels):
            ax = axes[row, c]
            ax.set_axis_off()
            if c < maps.shape[-1]:
                ax.imshow(maps[..., c], cmap="gray")
        axes[row, 0].set_title(layer.name[:20], fontsize=7, loc="left")
    return figure_to_array(fig)


def overlay(raw: np.ndarray, boundaries: np.ndarray | None = None, seg: np.ndarray | None = None) -> np.ndarray:
    """One section: raw in grey, predicted boundaries in red, segments tinted by id.

    Args:
        raw: ndarray of shape (Y, X), uint8 or float in [0, 1].
        boundaries: ndarray of shape (Y, X), float in [0, 1], or None.
        seg: ndarray of shape (Y, X), integer ids, or None.

    Returns:
        ndarray of shape (Y, X * panels, 3), uint8: raw+boundaries, and the segments.
    """
    grey = raw.astype(np.float32) / (255.0 if raw.dtype.kind in "ui" else 1.0)
    rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    panels = []
    if boundaries is not None:
        b = np.clip(boundaries, 0, 1)[..., None]
        panels.append(rgb * (1 - 0.6 * b) + 0.6 * b * np.array([1.0, 0.0, 0.0]))
    else:
        panels.append(rgb)
    if seg is not None:
        ids = seg.astype(np.uint64)
        colors = np.stack([(ids * k) % 251 for k in (97, 57, 13)], axis=-1).astype(np.float32) / 250
        colors[ids == 0] = 0
        panels.append(0.5 * rgb + 0.5 * colors)
    return (np.concatenate(panels, axis=1) * 255).round().astype(np.uint8)


def learning_curves(curves: dict, *, x_label: str = "training minutes") -> np.ndarray:
    """One panel per curve, each ``name -> [(x, y), ...]`` (e.g. validation pixel error
    against training minutes); returns an RGB uint8 image.

    Args:
        curves: name -> list of (x, y) points; empty curves are left out.
        x_label: the x axis's label.
    """
    names = [name for name, points in curves.items() if points] or ["(no points yet)"]
    fig, axes = _figure(1, len(names), size=3.0)
    for ax, name in zip(axes[0], names):
        points = sorted(curves.get(name) or [])
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3)
        ax.set_xlabel(x_label, fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return figure_to_array(fig)


__all__ = ["feature_maps", "figure_to_array", "learning_curves", "overlay", "weight_histograms"]
