"""Log-probabilities of chosen tokens: what the sampler reports for each token it draws, and what
the trainers recompute for the same tokens (SFT's loss, RL's ratio and KL). Both go through
token_logprobs, so the two sides agree to float rounding (logged as logp_diff_max in RL).
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

LOGPROB_CHUNK = 256  # positions per lm_head + log-softmax chunk in selected_logprobs


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """log p(token) = log_softmax(logits / T)[token] (T = 0 counts as 1): what generate() reports in
    .logprobs and what the trainers recompute. Top-k and top-p shape only the draw, never these
    numbers: renormalising over a nucleus gives log p = 0, and so no gradient, for a one-token
    nucleus, and -inf for a token outside another model's nucleus (TRL and OpenRLHF compute training
    log-probs under the temperature alone, as here). logits (..., V), tokens (...) -> (...)."""
    z = logits.float()
    if temperature > 0 and temperature != 1.0:
        z = z / temperature
    return z.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)


def selected_logprobs(model, inp: torch.Tensor, tgt: torch.Tensor, *, temperature: float = 1.0,
                      chunk: int = LOGPROB_CHUNK) -> torch.Tensor:
    """The trainer's side of the sampler's log-probs: log p(tgt_t | inp_<=t) =
    token_logprobs(lm_head(h_t), tgt_t, T) for every position, (B, T) float32, at the sampler's
    temperature (default 1: plain log-softmax, as SFT needs). inp, tgt: (B, T). One forward gives
    the hidden states (through a DDP wrapper too: model(inp, return_hidden=True)); lm_head and the
    log-softmax then run `chunk` positions at a time, each chunk under activation checkpointing when
    gradients are on, so the (B, T, V) logits never exist at once (for a 152k vocabulary they would
    not fit)."""
    h = model(inp, return_hidden=True)  # (B, T, hidden)
    head = getattr(model, "module", model).lm_head  # the bare model under DDP

    def part(hc, tc):
        return token_logprobs(head(hc), tc, temperature)  # (B, chunk)

    grad = torch.is_grad_enabled() and h.requires_grad
    outs = [checkpoint(part, h[:, s:s + chunk], tgt[:, s:s + chunk], use_reentrant=False) if grad
            else part(h[:, s:s + chunk], tgt[:, s:s + chunk])
            for s in range(0, inp.shape[1], chunk)]
    return torch.cat(outs, 1)
