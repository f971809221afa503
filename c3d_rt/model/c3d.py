"""The C3D network (Tran et al. 2015), width-scalable, plus its parameter groups.

The layer names are the reference implementation's, so that Sports-1M state
dicts load key for key. The model never imports export or runtime code.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..core.config import CONV_LAYERS, POOL5_PADDING, POOL_KERNELS, ModelConfig

# torch's MaxPool3d arguments for the contract's pools (core.config.POOL_KERNELS)
POOLS = {name: dict(kernel_size=k, stride=k, **({"padding": POOL5_PADDING} if name == "conv5b" else {}))
         for name, k in POOL_KERNELS.items()}
POOL_NAMES = {"conv1": "pool1", "conv2": "pool2", "conv3b": "pool3", "conv4b": "pool4", "conv5b": "pool5"}


class C3D(nn.Module):
    """C3D: eight 3D convolutions, five max-pools, three fully connected layers."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        in_ch = 3
        for name, base in CONV_LAYERS:
            out_ch = config.channels(base)
            setattr(self, name, nn.Conv3d(in_ch, out_ch, kernel_size=3, padding=1))
            if config.batch_norm:
                setattr(self, f"bn{name[4:]}", nn.BatchNorm3d(out_ch))
            if name in POOLS:
                setattr(self, POOL_NAMES[name], nn.MaxPool3d(**POOLS[name]))
            in_ch = out_ch
        self.fc6 = nn.Linear(config.fc6_in, config.fc_width)
        self.fc7 = nn.Linear(config.fc_width, config.fc_width)
        self.fc8 = nn.Linear(config.fc_width, config.num_classes)
        self.dropout = nn.Dropout(p=config.dropout)
        self.relu = nn.ReLU()
        self._init_weights()

    def _init_weights(self) -> None:
        # The seed's init: Kaiming on the convolutions, PyTorch's default elsewhere.
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for name, _ in CONV_LAYERS:
            x = getattr(self, name)(x)
            if self.config.batch_norm:
                x = getattr(self, f"bn{name[4:]}")(x)
            x = self.relu(x)
            if name in POOLS:
                x = getattr(self, POOL_NAMES[name])(x)
        return x  # (B, 512w, T/16, 4, 4) at the defaults

    def forward_layers(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """clip: (B, 3, T, H, W) mean-subtracted BGR -> (fc6, fc7, logits), each (B, dims).

        fc6 and fc7 are taken after their ReLU, as the C3D authors' Caffe extractor gives them (its ReLU works
        in place on the fc6/fc7 blobs) and as the papers that use C3D features read them; dropout (identity in
        eval) comes after, on the way to the next layer, as in training.
        """
        if self.config.input_scale != 1.0:
            clip = clip * self.config.input_scale
        x = self.features(clip).flatten(1)  # (B, fc6_in)
        fc6 = self.relu(self.fc6(x))
        fc7 = self.relu(self.fc7(self.dropout(fc6)))
        return fc6, fc7, self.fc8(self.dropout(fc7))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip: (B, 3, T, H, W) mean-subtracted BGR -> logits (B, num_classes)."""
        return self.forward_layers(clip)[2]


def build_c3d(
    *,
    num_classes: int = 101,
    width: float = 1.0,
    clip_len: int = 16,
    crop_size: int = 112,
    dropout: float = 0.5,
    input_scale: float = 1.0,
) -> C3D:
    """Build a C3D with explicit keyword arguments (the paper's network at the defaults)."""
    return C3D(
        ModelConfig(
            num_classes=num_classes,
            width=width,
            clip_len=clip_len,
            crop_size=crop_size,
            dropout=dropout,
            input_scale=input_scale,
        )
    )


def backbone_params(model: C3D) -> Iterator[nn.Parameter]:
    """conv1 ... fc7 (and BatchNorm, when present): the seed's 1x learning-rate group."""
    head = {id(p) for p in model.fc8.parameters()}
    yield from (p for p in model.parameters() if p.requires_grad and id(p) not in head)


def head_params(model: C3D) -> Iterator[nn.Parameter]:
    """fc8: the seed's 10x learning-rate group."""
    yield from (p for p in model.fc8.parameters() if p.requires_grad)


def param_groups(model: C3D, lr: float, head_lr_mult: float = 10.0) -> list[dict]:
    return [
        {"params": list(backbone_params(model)), "lr": lr},
        {"params": list(head_params(model)), "lr": lr * head_lr_mult},
    ]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
