"""Asynchronous successive halving (ASHA, Li et al. 2018): stop the hopeless trials of a sweep
early, from their validation accuracy.

Rungs sit at ``grace_period * reduction_factor ** k`` epochs (below the trials' last epoch).
When a trial reaches a rung its validation accuracy is recorded there, and it goes on only if it
is at least the ``1 - 1 / reduction_factor`` quantile of what that rung has recorded so far
(the first trial at a rung always goes on). Nothing waits for a full rung: that is what makes
it asynchronous, and the same rule as Ray Tune's ``ASHAScheduler`` with one bracket. Ray Tune
itself is not needed (it pulls in pandas and pyarrow).
"""
import numpy as np


class Asha:
    """The rule above for trials of ``max_epochs`` epochs; ``report`` says continue or stop."""

    def __init__(self, max_epochs, grace_period=1, reduction_factor=3):
        if grace_period < 1 or reduction_factor < 2:
            raise ValueError(f"Asha: need grace_period >= 1 and reduction_factor >= 2, got "
                             f"{grace_period} and {reduction_factor}")
        self.rungs = {}
        milestone = grace_period
        while milestone < max_epochs:
            self.rungs[milestone] = []
            milestone *= reduction_factor
        self.reduction_factor = reduction_factor

    def report(self, trial_id, epoch, value):
        """Records ``value`` (validation accuracy) of ``trial_id`` after ``epoch``; returns False
        when the trial should stop."""
        if epoch not in self.rungs or value is None:
            return True
        recorded = self.rungs[epoch]
        recorded.append(float(value))
        cutoff = np.percentile(recorded, 100 * (1 - 1 / self.reduction_factor))
        return not value < cutoff
