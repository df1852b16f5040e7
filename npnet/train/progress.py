"""What the user sees and does while training: the tqdm bar of each epoch and Ctrl-C handling."""
import contextlib
import signal
import sys
import threading

from tqdm.auto import tqdm

_SHOWN = {"train_loss": "loss", "train_accuracy": "acc", "val_loss": "val_loss",
          "val_accuracy": "val_acc"}


def epoch_bar(epoch, epochs, total, done, show):
    """A bar over the ``total`` batches of an epoch, starting at ``done`` (a resumed epoch);
    disabled (and silent) when ``show`` is false."""
    return tqdm(total=total, initial=done, desc=f"epoch {epoch}/{epochs}", unit="batch",
                disable=not show, leave=True, dynamic_ncols=True, file=sys.stderr)


def postfix(bar, row, refresh=False, **extra):
    """Shows the loss and accuracy columns of ``row`` (and ``extra`` numbers) after the bar."""
    if bar.disable:
        return
    post = {short: f"{row[k]:.4f}" for k, short in _SHOWN.items() if row.get(k) is not None}
    post.update({k: f"{v:.0f}" for k, v in extra.items()})
    bar.set_postfix(post, refresh=refresh)


def show_step(bar, sums, images_per_s):
    """Advances the bar by one batch; ``sums`` are the epoch's running sums."""
    if not bar.disable:
        seen = max(sums["seen"], 1)
        row = {"train_loss": sums["loss"] / seen,
               "train_accuracy": None if sums["correct"] is None else sums["correct"] / seen}
        postfix(bar, row, img_s=images_per_s)
    bar.update(1)


@contextlib.contextmanager
def ctrl_c_stops(trainer):
    """While training, the first Ctrl-C sets ``trainer._stop_requested`` so that the loop stops
    after the current step; a second one raises KeyboardInterrupt at once. Only in the main
    thread (Python delivers signals there only); elsewhere Ctrl-C is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer._stop_requested:
            raise KeyboardInterrupt
        trainer._stop_requested = True
        print("\nCtrl-C: stopping after this step (press again to abort at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
