"""Input validation shared by the layers: clear errors that name the layer, what it expected and
what it got. Never a silent broadcast, never a silent upcast."""
import numpy as np


def check_input(module, x, ndims, shape_desc, features=None, axis=1):
    """Checks ``x`` for ``module`` and returns it unchanged.

    ndims: allowed numbers of dimensions; shape_desc: the expected shape in words, e.g. "(N, C, H, W)";
    features: the required size of ``x.shape[axis]`` (e.g. in_features, in_channels), or None.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{module._label()}: expected a numpy.ndarray, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{module._label()}: expected a floating-point input, got dtype {x.dtype}")
    if x.ndim not in ndims:
        raise ValueError(f"{module._label()}: expected input of shape {shape_desc}, got {x.shape}")
    if features is not None and x.shape[axis] != features:
        raise ValueError(f"{module._label()}: expected input of shape {shape_desc} with size {features} "
                         f"at dim {axis}, got {x.shape}")
    pdtype = module.dtype
    if pdtype is not None and x.dtype != pdtype:
        raise TypeError(f"{module._label()}: input dtype {x.dtype} does not match the layer's {pdtype} "
                        f"parameters; convert the input or call model.astype({x.dtype})")
    return x


def check_grad(module, dout, expected_shape, dtype):
    """Checks the upstream gradient of ``module.backward`` against the forward output."""
    # the layer's label is built only for an error message (it costs a repr of the layer)
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"{module._label()}.backward: expected a numpy.ndarray, got {type(dout).__name__}")
    if dout.shape != tuple(expected_shape):
        raise ValueError(f"{module._label()}.backward: expected gradient of shape {tuple(expected_shape)}, "
                         f"got {dout.shape}")
    if dout.dtype != dtype:
        raise TypeError(f"{module._label()}.backward: expected gradient of dtype {dtype}, got {dout.dtype}")
    return dout
