"""K workers in one batched forward/backward: torch.func.vmap over parameters stacked in place.

The stacked tensors are views of the same flat storage the per-worker models use, so mixing,
optimizers, checkpoints and evaluation are shared with the serial mode; only the gradient
computation differs. Each worker keeps its own BatchNorm statistics (buffers are stacked too).
"""
from __future__ import annotations

import sys
import warnings
from typing import Callable

import torch
from torch.func import functional_call, vmap

from dsgd.train.workers import WorkerSet


# Stacked gradients are strided views of the flat gradient buffer, by design.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class VectorizedWorkerSet(WorkerSet):
    """Same workers as WorkerSet; compute_grads runs all K at once."""

    def __init__(self, *args, probe=None, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.models[0]
        self._param_names = [n for n, _ in model.named_parameters()]
        self._buffer_names = [n for n, _ in model.named_buffers()]
        # Leaves that alias the parameter storage; their .grad aliases the gradient storage.
        self._stacked = [self.layout.stacked(self.params, i).detach().requires_grad_()
                         for i in range(len(self.layout))]
        self._stacked_grads = [self.layout.stacked(self.grads, i) for i in range(len(self.layout))]
        self._stacked_buffers = [self.buffer_layout.stacked(self.buffers, i) for i in range(len(self.buffer_layout))]
        self._template = model

        def loss_and_correct(params, buffers, x, y):
            out = functional_call(self._template, (params, buffers), (x,))
            return self.task.loss(out, y), self.task.hits(out, y)
        self._batched = vmap(loss_and_correct)
        if probe is not None:
            self._probe(*probe)

    @torch.no_grad()
    def _probe(self, x, y) -> None:
        """One batched forward on copies of the buffers: fails here, not mid-run, if vmap cannot batch the model."""
        params = dict(zip(self._param_names, self._stacked))
        buffers = {n: b.clone() for n, b in zip(self._buffer_names, self._stacked_buffers)}
        self._template.train()
        self._batched(params, buffers, x[:2].expand(self.K, *x[:2].shape), y[:2].expand(self.K, *y[:2].shape))

    def compute_grads(self, batch_of: Callable, physical_batch: int = 0) -> tuple[float, float, int]:
        for g in self.grads:
            g.zero_()
        for s, g in zip(self._stacked, self._stacked_grads):
            s.grad = g
        batches = [batch_of(w) for w in self.workers]
        x = torch.stack([b[0] for b in batches])
        y = torch.stack([b[1] for b in batches])
        B = y.shape[1]
        chunk = physical_batch if 0 < physical_batch < B else B
        params = dict(zip(self._param_names, self._stacked))
        # Batched BatchNorm updates running statistics only in contiguous tensors: work on
        # copies and write them back to the workers' storage afterwards.
        work = [b.contiguous() if b.is_contiguous() else b.clone() for b in self._stacked_buffers]
        buffers = dict(zip(self._buffer_names, work))
        self._template.train()
        loss_sum, correct = 0.0, 0
        for i in range(0, B, chunk):
            losses, hits = self._batched(params, buffers, x[:, i:i + chunk], y[:, i:i + chunk])
            n = y[:, i:i + chunk].shape[1]
            (losses.sum() * (n / B)).backward()
            loss_sum += float(losses.detach().sum()) * self.task.count(y[0, i:i + chunk])
            correct += int(hits.sum())
        for s, g in zip(self._stacked, self._stacked_grads):
            if s.grad is not g:  # autograd replaced rather than accumulated: keep the flat buffer current
                g.copy_(s.grad)
        for view, b in zip(self._stacked_buffers, work):
            if view.data_ptr() != b.data_ptr():
                view.copy_(b)
        return loss_sum, correct, self.task.count(y[0]) * self.K


def choose(mode: str, device: torch.device, K: int) -> bool:
    """Whether to vectorize. auto: on GPUs (one launch for K workers); on CPUs the serial mode
    is as fast or faster (measured by `python -m dsgd.bench workers`), so auto stays serial."""
    if mode == "on":
        return True
    if mode == "off" or K == 1:
        return False
    return device.type == "cuda"


def make_workers(model, K: int, first_worker: int, optim_cfg, device, mode: str, probe=None,
                 task=None) -> WorkerSet:
    """Serial or vectorized workers; `probe` is a sample (x, y) batch to try the batched pass on."""
    if choose(mode, device, K):
        try:
            return VectorizedWorkerSet(model, K, first_worker, optim_cfg, device, task, probe=probe)
        except Exception as e:  # a model vmap cannot batch: fall back, say why
            print(f"dsgd: cannot vectorize {type(model).__name__} ({type(e).__name__}: {e}); "
                  f"training its {K} workers one after another", file=sys.stderr)
    return WorkerSet(model, K, first_worker, optim_cfg, device, task)
