"""A small GPT-style language model: token and position embeddings, pre-norm transformer blocks with
causal self-attention, and a head over the vocabulary (bytes: 256)."""
from __future__ import annotations

import torch
from torch import nn


class GPT(nn.Module):
    """Causal transformer over `context` tokens; forward maps (N, T) token ids to (N, T, vocab) logits."""

    def __init__(self, context: int, vocab: int = 256, width: int = 64, heads: int = 4, layers: int = 2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(context, width)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The causal mask is made per call, not held as a buffer: mixing averages floating-point
        # buffers, and a mask of -inf has nothing to average.
        T = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)
        h = self.tok(x) + self.pos(torch.arange(T, device=x.device))
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))
