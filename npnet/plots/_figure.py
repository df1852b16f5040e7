"""What every figure shares: a constrained-layout ``Figure`` (matplotlib imported here, on the
first figure, not at import) and its atomic PNG file."""
from .._io import atomic_write


def _figure(width, height):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig, path, dpi=100):
    """Writes ``fig`` as PNG to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def _done(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig
