"""Training: the one loop, the workers a process holds, evaluation and reporting."""
