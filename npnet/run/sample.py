"""Language-model runs: their data (``windows`` of a corpus, ``VocabularyFile``), text from a
trained one (``npnet sample``, ``TrainedLanguageModel``) and the end of one
(``report_language_model``: test perplexity, ``metrics.json``, a sample).

    run = npnet.load_run("runs/char_lstm-20260101-120000")   # a TrainedLanguageModel
    print(run.sample("def ", length=200, temperature=0.8, seed=0))

The vocabulary is the run folder's ``vocab.json`` (written when training starts); a prompt with a
character outside it is a ValueError that names the characters.
"""
import json
import math
import os

from .. import data, distributed
from .._io import atomic_write_text
from ..train import Callback
from ..train.checkpoint import load_checkpoint

SAMPLE_LENGTH, SAMPLE_TEMPERATURE = 300, 0.8  # the report's sample


def windows(corpus, seq_len, val_fraction):
    """``(x_train, y_train, x_val, y_val, x_test, y_test)``: (N, seq_len) windows of ids and their
    next-id targets (``data.token_windows``) of consecutive train, validation and test pieces of
    ``corpus`` (``CharCorpus.split``); no validation (None, None) when ``val_fraction`` is 0.
    A ValueError says which piece is too short."""
    pieces = corpus.split(val_fraction)
    try:
        (x_tr, y_tr), val, (x_te, y_te) = [
            data.token_windows(ids, seq_len) if len(ids) else None for ids in pieces]
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot cut {corpus.name} into windows of data.seq_len {seq_len} (train, "
                         f"validation and test hold {', '.join(str(len(p)) for p in pieces)} "
                         f"characters): {e}") from None
    return (x_tr, y_tr) + ((None, None) if val is None else val) + (x_te, y_te)


class VocabularyFile(Callback):
    """Writes ``vocab.json`` (the characters of the ids, ``data.Vocabulary.save``) into the run
    folder when training starts, where ``npnet sample`` reads it back: the vocabulary of a
    language model's run is saved with it."""

    def __init__(self, run, chars):
        self.path, self.vocab = os.path.join(run, "vocab.json"), data.Vocabulary(chars)

    def on_fit_begin(self, trainer):
        if distributed.is_writer():
            self.vocab.save(self.path)


class TrainedLanguageModel:
    """A language model's run, for sampling. Attributes: ``model`` (eval mode), ``config``,
    ``vocab`` (``data.Vocabulary``), ``checkpoint`` (the weights' file) and ``epoch``."""

    def __init__(self, model, config, vocab, checkpoint, epoch):
        self.model, self.config, self.vocab = model, config, vocab
        self.checkpoint, self.epoch = checkpoint, epoch
        model.eval()

    def __repr__(self):
        return (f"TrainedLanguageModel({self.config['network']['model']!r} on "
                f"{self.config['data']['dataset']}, {self.epoch} epoch(s), weights {self.checkpoint!r})")

    def sample(self, prompt, length=SAMPLE_LENGTH, temperature=1.0, seed=None):
        """``prompt`` followed by ``length`` characters drawn from the model at ``temperature``
        (0: always the likeliest), seeded by ``seed``."""
        return sample_text(self.model, self.vocab, prompt, length, temperature, seed,
                           self.config["data"]["seq_len"])


def sample_text(model, vocab, prompt, length, temperature=1.0, seed=None, context=None):
    """The text of ``model.generate`` from ``prompt`` (see ``TrainedLanguageModel.sample``);
    ``context``: the training windows' length (what a Transformer sees of the past)."""
    if not prompt:
        raise ValueError("the prompt is empty; give at least one character")
    if length < 0 or not temperature >= 0:
        raise ValueError(f"need length >= 0 and temperature >= 0, got {length} and {temperature}")
    ids = vocab.encode(prompt, "the prompt")[None]  # (1, T0)
    return vocab.decode(model.generate(ids, length, temperature, seed, context)[0])


def language_model_run(config, checkpoint, arrays, build):
    """The ``TrainedLanguageModel`` of a checkpoint's ``arrays``; ``build(config, in_shape,
    num_classes)`` makes the model. The vocabulary is ``vocab.json`` beside the checkpoint."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "vocab.json")
    if not os.path.isfile(path):
        raise ValueError(f"{checkpoint}: no vocab.json beside it, so the characters of the model's "
                         "ids are unknown; sample from the run folder npnet train wrote")
    vocab = data.Vocabulary.load(path)
    model = build(config, (config["data"]["seq_len"],), len(vocab))
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    model.load_state_dict(state)  # strict: another vocabulary size is a ValueError
    return TrainedLanguageModel(model, config, vocab, checkpoint, int(arrays.get("epoch", 0)))


def report_language_model(trainer, config, run, test, chars, has_val, log=print, world=None):
    """The end of a language model's run: with the best checkpoint's weights (when kept), the
    test loss (nats per character), perplexity exp(loss) and bits per character, a sample from
    the start of the test text, ``metrics.json`` (with ``world`` as ``report``'s) and
    ``learning_curves.png``; returns the metrics."""
    x_te, y_te, _ = test
    used = _best_weights(trainer, config, run)
    vocab = data.Vocabulary(chars)
    t = config["train"]
    loss = trainer.evaluate(data.DataLoader(x_te, y_te, t["eval_batch_size"], shuffle=False))["loss"]
    best_epoch, best = trainer.history.best("val_loss" if has_val else "train_loss", mode="min")
    prompt = vocab.decode(x_te[0, :min(40, x_te.shape[1])])
    text = sample_text(trainer.model, vocab, prompt, SAMPLE_LENGTH, SAMPLE_TEMPERATURE, config["seed"],
                       config["data"]["seq_len"])
    result = {"test_loss": loss, "test_perplexity": math.exp(loss), "test_bits_per_char": loss / math.log(2),
              "best_val_loss": best if has_val else None,
              "best_val_perplexity": math.exp(best) if has_val and best is not None else None,
              "best_epoch": best_epoch, "weights": used, "epochs": trainer.epoch, "vocab_size": len(vocab),
              "train_seconds": round(float(sum(r["time"] or 0.0 for r in trainer.history.epochs)), 3),
              "speed": getattr(trainer, "speed", None), "world": world,
              "sample": {"prompt": prompt, "temperature": SAMPLE_TEMPERATURE, "seed": config["seed"],
                         "text": text}}
    atomic_write_text(os.path.join(run, "metrics.json"), json.dumps(result, indent=1))
    log(f"test loss {loss:.4f} nats/char, perplexity {math.exp(loss):.3f}, "
        f"{loss / math.log(2):.3f} bits/char ({used} weights)\nsample (temperature "
        f"{SAMPLE_TEMPERATURE}):\n{text}")
    from .. import plots
    plots.plot_learning_curves({config["name"]: trainer.history},
                               path=os.path.join(run, "learning_curves.png"))
    return result


def _best_weights(trainer, config, run):
    best = os.path.join(run, "best.npz")
    if config["network"]["save_best"] and os.path.exists(best):
        arrays = load_checkpoint(best)
        trainer.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        return "best.npz"
    return "last"
