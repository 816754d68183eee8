"""What a parameter mixing step carries: the parameters, and by policy BatchNorm statistics and optimizer state.

The parameters may stay in flight (overlap) while the other buffers are mixed; the mixer gives
every step in flight its own receive and staging memory, so they never alias.
"""
from __future__ import annotations


def mix_model_(mixer, workers, W, mix_buffers: bool, mix_state: bool, start_only: bool = False, extra=()):
    """Mix the workers' parameters with W, plus BatchNorm buffers / optimizer state when asked.

    Args:
        workers: has `params` ((K, m) buckets) and pack/unpack pairs for buffers and state.
        start_only: leave the parameter step in flight and return it (overlap); else finish it.
        extra: a rule's own buffers mixed with the same W, in the same exchange as the parameters.
    """
    pending = mixer.start([*workers.params, *extra], W, blocking=not start_only)
    for pack, unpack, wanted in ((workers.packed_buffers, workers.unpack_buffers, mix_buffers),
                                 (workers.packed_state, workers.unpack_state, mix_state)):
        bufs = pack() if wanted else None
        if bufs is not None:
            mixer.mix_(bufs, W)
            unpack(bufs)
    if start_only:
        return pending
    pending.wait()
    return None
