"""The K workers one process holds: models whose parameters live in shared flat buffers.

Row k of every parameter (and gradient) buffer is worker k, so the mixer reads and writes the
models directly. Each worker has its own optimizer, its own data stream and its own BatchNorm
statistics; they differ only through what each saw and what mixing did.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch

from dsgd.comm import BucketLayout, bind_, bind_grads_
from dsgd.optimizers import SGD, AdamW, KernelOptimizer
from dsgd.tasks import Classification
from dsgd.train.regroup import zeroed_optimizer_state


def float_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """Buffers that mixing may average (running statistics; not integer counters)."""
    return [b for b in model.buffers() if b.is_floating_point()]


def bind_buffers_(model: torch.nn.Module, layout: BucketLayout, buffers, k: int) -> None:
    """Make replica k's module buffers (BatchNorm statistics, counters) views of row k."""
    i = 0
    for module in model.modules():
        for name, b in module._buffers.items():
            if b is None:
                continue
            view = layout.view(buffers, k, i)
            view.copy_(b)
            module._buffers[name] = view
            i += 1


def make_optimizer(params: Sequence[torch.nn.Parameter], names: Sequence[str], cfg) -> KernelOptimizer:
    """SGD (momentum, Nesterov) or AdamW; optionally no weight decay on biases and norm parameters.
    They are torch's steps without torch.optim.Optimizer, whose methods import torch._dynamo (dsgd.optimizers)."""
    decay, no_decay = [], []
    for p, name in zip(params, names):
        (no_decay if cfg.no_decay_norm_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg.optimizer == "sgd":
        return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True)
    return AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, foreach=True)


class WorkerSet:
    """K replicas of `model`, identical at the start, trained one after another."""

    def __init__(self, model: torch.nn.Module, K: int, first_worker: int, optim_cfg, device, task=None):
        models = [copy.deepcopy(model).to(device) for _ in range(K)]
        names = [n for n, _ in models[0].named_parameters()]
        self._bind(models, [make_optimizer(list(m.parameters()), names, optim_cfg) for m in models], first_worker,
                   device)
        self.task = task if task is not None else Classification()

    @classmethod
    def of(cls, models: Sequence[torch.nn.Module], optimizers: Sequence[torch.optim.Optimizer], first_worker: int,
           device=None, bucket_bytes: int | None = None) -> "WorkerSet":
        """The caller's own models and optimizers (the library's), bound in place: no copies."""
        workers = cls.__new__(cls)
        workers._bind(list(models), list(optimizers), first_worker, device, bucket_bytes)
        workers.task = Classification()  # unused: the library's user computes their own loss
        return workers

    def _bind(self, models, optimizers, first_worker: int, device, bucket_bytes: int | None = None) -> None:
        """Make the models' parameters, gradients and buffers rows of shared flat buffers."""
        self.K, self.first_worker = len(models), first_worker
        self.device = device if device is not None else next(models[0].parameters()).device
        self.models, self.optimizers = models, optimizers
        params = [list(m.parameters()) for m in self.models]
        self.layout = BucketLayout(params[0]) if bucket_bytes is None else BucketLayout(params[0], bucket_bytes)
        self.params = self.layout.allocate(self.K)
        self.grads = self.layout.allocate(self.K)
        for k in range(self.K):
            bind_(self.layout, self.params, k, params[k])
            bind_grads_(self.layout, self.grads, k, params[k])
        self._state_layout = None
        # Buffers live in flat storage too: mixing averages the floating-point buckets in place.
        self.buffer_layout = BucketLayout(list(self.models[0].buffers()))
        self.buffers = self.buffer_layout.allocate(self.K)
        for k in range(self.K):
            bind_buffers_(self.models[k], self.buffer_layout, self.buffers, k)

    @property
    def workers(self) -> range:
        return range(self.first_worker, self.first_worker + self.K)

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = lr

    def compute_grads(self, batch_of: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                      physical_batch: int = 0) -> tuple[float, float, int]:
        """Forward and backward of the task's mean loss for every worker on its own batch; gradients
        land in self.grads.

        Returns (sum of losses x items, hits, items) over the K workers (items: samples, or tokens).
        """
        for g in self.grads:  # reused buffers: zero in place, autograd accumulates into them
            g.zero_()
        loss_sum, correct, seen = 0.0, 0, 0
        for k, model in enumerate(self.models):
            model.train()
            x, y = batch_of(self.first_worker + k)
            chunk = physical_batch if 0 < physical_batch < len(y) else len(y)
            for i in range(0, len(y), chunk):
                xc, yc = x[i:i + chunk], y[i:i + chunk]
                out = model(xc)
                loss = self.task.loss(out, yc)
                # chunks are weighted by their share of the local batch: the sum is the batch mean
                (loss * (len(yc) / len(y))).backward()
                loss_sum += loss.item() * self.task.count(yc)
                correct += int(self.task.hits(out, yc))
            seen += self.task.count(y)
        return loss_sum, correct, seen

    def optimizer_step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Parameters, module buffers (BatchNorm statistics, counters) and optimizer states of the K workers."""
        return {"params": [b.detach().cpu() for b in self.params],
                "buffers": [[b.detach().cpu() for b in m.buffers()] for m in self.models],
                "optim": [o.state_dict() for o in self.optimizers]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for b, saved in zip(self.params, state["params"]):
            b.copy_(saved)
        for m, saved in zip(self.models, state["buffers"]):
            for b, s in zip(m.buffers(), saved):
                b.copy_(s)
        for o, saved in zip(self.optimizers, state["optim"]):
            o.load_state_dict(saved)

    def regroup_state(self, g) -> dict:
        """This rank's workers from the old ranks' saved states (a `Regroup`): rows of the workers
        it keeps; a new worker gets the old workers' average parameters and floating-point buffers
        and a zeroed optimizer state."""
        def mean_buffers():
            every = [m for st in g.old for m in st["buffers"]]   # every old worker's buffers
            return [torch.stack([m[i] for m in every]).double().mean(0).to(b.dtype) if b.is_floating_point()
                    else b.clone() for i, b in enumerate(every[0])]
        return {"params": [g.rows(lambda s, b=b: s["params"][b], lambda b=b: g.mean_row(lambda s: s["params"][b]))
                           for b in range(len(self.params))],
                "buffers": g.items(lambda s: s["buffers"], mean_buffers),
                "optim": g.items(lambda s: s["optim"], lambda: zeroed_optimizer_state(g.old[0]["optim"][0]))}

    # -- what else mixing may carry --------------------------------------------------------
    def packed_buffers(self):
        """Floating-point buffers (BatchNorm statistics) of the K workers, (K, m) each, or None."""
        floats = [b for b in self.buffers if b.is_floating_point()]
        return floats or None

    def unpack_buffers(self, bufs) -> None:
        """Nothing to do: the packed buffers are the models' own storage."""

    STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq")  # per-parameter state that mixing may average

    def state_tensors(self, k: int) -> list[torch.Tensor]:
        """Optimizer state tensors of worker k (momentum, Adam moments), in parameter order."""
        opt = self.optimizers[k]
        out = []
        for group in opt.param_groups:
            for p in group["params"]:
                for key in self.STATE_KEYS:
                    t = opt.state.get(p, {}).get(key)
                    if isinstance(t, torch.Tensor):
                        out.append(t)
        return out

    def packed_state(self):
        """The optimizer state of the K workers as (K, m) buckets that ARE the optimizers' state: bound
        once (when the optimizers first create it, and again after they load a state_dict, which
        replaces it), so mixing it costs no copy in or out. None before the first step made any."""
        tensors = [self.state_tensors(k) for k in range(self.K)]
        if not tensors[0]:
            return None
        layout, bufs = self._state_layout, getattr(self, "_state_buffers", None)
        bound = bufs is not None and len(layout) == len(tensors[0]) and all(
            t.data_ptr() == layout.view(bufs, k, i).data_ptr() for k in range(self.K) for i, t in enumerate(tensors[k]))
        if not bound:
            self._state_layout = layout = BucketLayout(tensors[0])
            self._state_buffers = bufs = layout.allocate(self.K)
            for k in range(self.K):
                self._bind_state(k, layout, bufs)
        return bufs

    @torch.no_grad()
    def _bind_state(self, k: int, layout: BucketLayout, bufs) -> None:
        """Copy worker k's state tensors into row k and put the row's views in the optimizer's state."""
        opt, i = self.optimizers[k], 0
        for group in opt.param_groups:
            for p in group["params"]:
                state = opt.state.get(p, {})
                for key in self.STATE_KEYS:
                    if isinstance(state.get(key), torch.Tensor):
                        view = layout.view(bufs, k, i)
                        view.copy_(state[key])
                        state[key] = view
                        i += 1

    def unpack_state(self, bufs) -> None:
        """Nothing to do: the packed state is the optimizers' own storage."""
