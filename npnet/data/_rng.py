"""Random generators and their state as numpy arrays (so checkpoints need no pickle)."""
import json

import numpy as np


def make_rng(seed=None, rng=None):
    """A numpy Generator: `rng` itself if given, else `np.random.default_rng(seed)`."""
    if rng is not None:
        if seed is not None:
            raise ValueError("pass either seed or rng, not both")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, received {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def rng_state(rng):
    """The bit generator's state as a 0-d str array (JSON: PCG64's 128-bit ints do not fit int64)."""
    state = rng.bit_generator.state
    return np.array(json.dumps(state, default=lambda a: np.asarray(a).tolist(), sort_keys=True))


def set_rng_state(rng, array):
    """Restore a state produced by `rng_state`."""
    state = json.loads(str(np.asarray(array)[()]))
    expected = rng.bit_generator.state["bit_generator"]
    if state.get("bit_generator") != expected:
        raise ValueError(f"saved RNG state is for {state.get('bit_generator')}, this generator is "
                         f"{expected}")
    rng.bit_generator.state = state
