"""An onnxruntime session behind a torch module's call (no timm, no model code: serving imports it)."""

from __future__ import annotations

import torch


class OrtModule(torch.nn.Module):
    """An onnxruntime session behind a module's call, so `collect_logits` runs it unchanged."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.input = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: x.float().numpy()})[0])
