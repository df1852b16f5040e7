"""What the user sees and does while training: a tqdm bar per epoch that moves with every batch
(in a terminal), one plain line per epoch (anywhere else: a log file, a pipe, CI), and Ctrl-C.
Everything goes to stderr, so that stdout keeps only what the program prints itself."""
import contextlib
import glob
import os
import signal
import sys
import threading

from tqdm.auto import tqdm

_SHOWN = {"train_loss": "loss", "train_accuracy": "acc", "val_loss": "val_loss",
          "val_accuracy": "val_acc"}


def mode(progress):
    """``"bar"``, ``"lines"`` or None (silent) for the Trainer's ``progress`` argument: True is
    the bar, False silence, None the bar when stderr is a terminal and plain lines otherwise."""
    if progress is None:
        return "bar" if _is_terminal(sys.stderr) else "lines"
    return "bar" if progress else None


_KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
COLD_START = ("npnet: the first steps compile npnet's Numba kernels ({why}; about 40 s on 2 idle "
              "cores, minutes on a loaded machine); later runs start in about a second")
_said = {"cold start": False}


def kernels_cached():
    """Whether Numba's disk cache holds compiled npnet kernels (``*.nbi`` index files beside the
    kernels, or under ``$NUMBA_CACHE_DIR``); False with ``NPNET_NUMBA_CACHE=0``."""
    from ..kernels import _jit
    if not _jit.CACHE:
        return False
    stems = {os.path.splitext(f)[0] for f in os.listdir(_KERNELS) if f.endswith(".py")}
    where = os.environ.get("NUMBA_CACHE_DIR")
    found = (glob.glob(os.path.join(where, "**", "*.nbi"), recursive=True) if where
             else glob.glob(os.path.join(_KERNELS, "__pycache__", "*.nbi")))
    return any(os.path.basename(f).split(".")[0] in stems for f in found)


def say_cold_start(progress):
    """Once per process, when training shows progress (``mode(progress)`` not None) and nothing
    is compiled yet: says on stderr why the first steps take long and for about how long."""
    if _said["cold start"] or mode(progress) is None or kernels_cached():
        return False
    from ..kernels import _jit
    why = "once: their cache is empty" if _jit.CACHE else "NPNET_NUMBA_CACHE=0: every run"
    print(COLD_START.format(why=why), file=sys.stderr, flush=True)
    _said["cold start"] = True
    return True


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def epoch_bar(epoch, epochs, total, done, show):
    """A bar over the ``total`` batches of an epoch, starting at ``done`` (a resumed epoch);
    disabled (and silent) when ``show`` is false."""
    return tqdm(total=total, initial=done, desc=f"epoch {epoch}/{epochs}", unit="batch",
                disable=not show, leave=True, dynamic_ncols=True, file=sys.stderr)


def show_step(bar, meter):
    """Advances the bar by one batch, showing the epoch's running loss, accuracy and images/s."""
    if not bar.disable:
        row = {"train_loss": meter.loss, "train_accuracy": meter.accuracy}
        bar.set_postfix(_postfix(row, meter.images_per_s), refresh=False)
    bar.update(1)


def show_epoch(bar, row, images_per_s):
    """The bar's last word on an epoch: its History ``row`` with the validation columns."""
    if not bar.disable:
        bar.set_postfix(_postfix(row, images_per_s), refresh=True)


def _postfix(row, images_per_s):
    post = {short: f"{row[k]:.4f}" for k, short in _SHOWN.items() if row.get(k) is not None}
    post["img/s"] = f"{images_per_s:.0f}"
    return post


def epoch_line(row, epochs=None, images_per_s=None):
    """One plain line for an epoch's History ``row``, e.g.
    ``epoch 3/10: train loss 0.5123 acc 0.8211  val loss 0.4410 acc 0.8502  lr 0.01  12.3 s  730 img/s``."""
    parts = []
    for split in ("train", "val"):
        loss, acc = row.get(f"{split}_loss"), row.get(f"{split}_accuracy")
        if loss is not None:
            parts.append(f"{split} loss {loss:.4f}" + (f" acc {acc:.4f}" if acc is not None else ""))
    parts.append(f"lr {row['lr']:.3g}  {row['time']:.1f} s")
    if images_per_s is not None:
        parts.append(f"{images_per_s:,.0f} img/s")
    return f"epoch {row['epoch']}{'' if epochs is None else f'/{epochs}'}: " + "  ".join(parts)


class StopRequest:
    """Set by the first Ctrl-C or SIGTERM inside ``ctrl_c_stops``; the loop reads ``requested``,
    ``signal`` names the signal that asked ("SIGINT" or "SIGTERM", None before one)."""

    def __init__(self):
        self.requested = False
        self.signal = None


class Aborted(KeyboardInterrupt):
    """Raised by a signal that aborts at once (the second Ctrl-C or SIGTERM of ``ctrl_c_stops``,
    SIGTERM inside ``signals_raise``): a KeyboardInterrupt, so every ``finally`` and atomic write
    on the way out runs, that names its signal ("SIGINT" or "SIGTERM") for the exit status
    (130 or 143)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum).name


def exit_status(interrupt):
    """128 + the signal number for a KeyboardInterrupt: 143 for an ``Aborted`` by SIGTERM, 130 for
    Ctrl-C (Python's own KeyboardInterrupt included)."""
    return 143 if getattr(interrupt, "signal", "SIGINT") == "SIGTERM" else 130


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; kill, scancel, a Slurm time limit, mpirun


@contextlib.contextmanager
def ctrl_c_stops(quiet=False):
    """Yields a ``StopRequest``. The first Ctrl-C or SIGTERM sets it (the loop stops after the
    current step; ``quiet``: without saying so, e.g. on all ranks but the first); a second one
    of either raises ``Aborted`` (a KeyboardInterrupt) at once. Only in the main thread (Python delivers signals
    there only); elsewhere the handlers are left as they are."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise Aborted(signum)
        stop.requested, stop.signal = True, signal.Signals(signum).name
        if not quiet:
            what = "Ctrl-C" if signum == signal.SIGINT else stop.signal
            print(f"\n{what}: stopping after this step (press again to abort at once)"
                  if signum == signal.SIGINT else
                  f"\n{what}: stopping after this step and saving a checkpoint (a second "
                  "signal aborts at once)", file=sys.stderr, flush=True)

    with _handling(STOP_SIGNALS, handler):
        yield stop


@contextlib.contextmanager
def signals_raise():
    """While inside, SIGTERM raises ``Aborted`` (a KeyboardInterrupt) as Ctrl-C does (its default would end the
    process on the spot): a file being written atomically is then removed, not left half
    written. ``ctrl_c_stops`` takes over inside ``Trainer.fit``. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Aborted(signum)

    with _handling((signal.SIGTERM,), handler):
        yield


@contextlib.contextmanager
def _handling(signums, handler):
    """``handler`` for every signal of ``signums`` while inside; the previous ones after."""
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
