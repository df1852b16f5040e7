"""The application on top of the library: the YAML schema of a run (``config``), the pieces of a
run (``experiment``), one run written to a folder (``runner``, ``report``), sweeps (the file
format ``sweep_spec``, one ``trial``, the driver ``sweep_run`` with its backends ``sweep_local``
and ``sweep_ray``, the tables and figures ``sweep_report``), a trained run for inference
(``trained``: ``load_run``, also ``npnet.load_run``) and the ``npnet`` command (``cli``).
This package imports ``npnet.train``, the model zoo and the figures; nothing below it imports
this package.
"""
from .config import SCHEMA, ConfigError, describe_schema, load_config, validate_config
from .experiment import RunError
from .overrides import apply_overrides, differing_keys
from .runner import checkpoint_config, resume_config, run_experiment
from .trained import TrainedRun, load_run, read_images

__all__ = ["SCHEMA", "ConfigError", "RunError", "describe_schema", "load_config",
           "validate_config", "apply_overrides", "differing_keys", "checkpoint_config",
           "resume_config", "run_experiment", "TrainedRun", "load_run", "read_images"]
