"""One evaluation of a run: the average model x_bar on the test set, the run's statistics, one metrics row."""
from __future__ import annotations

import time

import torch

from dsgd.train.evaluate import consensus_distance, evaluate, has_batchnorm, load_average_, reestimate_batchnorm_


class NonFiniteError(RuntimeError):
    """Loss or parameters became NaN or infinite."""


class Evaluator:
    """Measures the run at a step and logs the row; `heterogeneity` (or None) adds zeta2 and the
    workers' own accuracies."""

    def __init__(self, cfg, parts, mixer, log, meters, heterogeneity=None):
        self.cfg, self.p, self.mixer, self.comm = cfg, parts, mixer, mixer.comm
        self.log, self.meters, self.heterogeneity = log, meters, heterogeneity
        self.t_start = time.time()

    def average_into_eval_model(self, step: int, device) -> float:
        """Load x_bar (and BatchNorm statistics: averaged, or re-estimated) into the evaluation model;
        returns the consensus distance."""
        cfg, w, model = self.cfg, self.p.workers, self.p.eval_model
        avg = self.mixer.average(w.params)
        cd = consensus_distance(self.comm, w.params, avg, self.p.plan.n_workers)
        if not all(torch.isfinite(a).all() for a in avg):
            raise NonFiniteError(f"parameters are not finite at step {step}")
        load_average_(model, w.layout, avg)
        if has_batchnorm(model):
            if cfg.run.bn_batches > 0:
                reestimate_batchnorm_(model, self.p.train_set, cfg.run.bn_batches, cfg.run.batch_size,
                                      cfg.run.seed, step, device)
            else:
                floats = [b for b in model.buffers() if b.is_floating_point()]
                torch.nn.utils.vector_to_parameters(torch.cat(self.mixer.average(w.packed_buffers())), floats)
        return cd

    def __call__(self, step: int, device) -> dict:
        self.p.engine.finish_all()   # exchanges in flight land first: x_bar is of this step's parameters
        cfg, p, comm = self.cfg, self.p, self.comm
        cd = self.average_into_eval_model(step, device)
        test_loss, test_acc = evaluate(p.eval_model, p.test_set, comm, device, cfg.run.eval_samples, task=p.task)
        loss_sum, correct, seen = comm.allreduce_floats(self.meters.window)
        bytes_sent, comm_s, compute_s = comm.allreduce_floats(
            [float(self.mixer.worker_bytes_sent.sum()), self.mixer.stats.comm_s, self.meters.compute_s])
        act = p.rule.action(max(0, step - 1))
        train_loss = loss_sum / seen if seen else None
        row = {
            "step": step, "epoch": step / p.plan.steps_per_epoch, "phase": act.phase,
            "lr": p.lr(max(0, step - 1)), "local_steps": act.local_steps,
            "train_loss": train_loss, "train_acc": correct / seen if seen else None,
            "test_loss": test_loss, "test_acc": test_acc, "consensus_distance": cd,
            "bytes_sent": bytes_sent / p.plan.n_workers,
            "comm_s": comm_s / comm.size, "compute_s": compute_s / comm.size,
            "wall_s": time.time() - self.t_start,
        }
        row.update(p.task.extra_metrics("test", test_loss))
        if self.heterogeneity is not None:
            row.update(self.heterogeneity.measure(p.eval_model, p.workers.models, p.test_set, self.mixer,
                                                  p.workers.first_worker, device, cfg.run.eval_samples))
        self.meters.window = [0.0, 0.0, 0.0]
        self.log.metrics(row)
        extra = f"  perplexity {row['test_perplexity']:.2f}" if "test_perplexity" in row else ""
        self.log.info(f"eval step {step}: test acc {test_acc:.4f} loss {test_loss:.4f}{extra}  consensus {cd:.3g}  "
                      f"sent/worker {row['bytes_sent'] / 1e6:.1f} MB")
        return row
