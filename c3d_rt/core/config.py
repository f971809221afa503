"""Configuration dataclasses: the C3D contract lives here, and only here.

Every value below travels with a checkpoint (``asdict``) and is written into
every exported artifact, so the runtime never re-declares a constant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# --- the C3D contract (Tran et al. 2015; the seed's reference code) -----------------
CLIP_LEN = 16  # frames per clip
CROP_SIZE = 112  # square crop fed to the network
RESIZE_WH = (171, 128)  # every frame is resized to width x height before cropping
MEAN_BGR = (90.0, 98.0, 102.0)  # subtracted per channel, no division
CHANNEL_ORDER = "BGR"  # OpenCV's order; the network was trained on it
# (name, base output channels); each conv is 3x3x3, padding 1, followed by ReLU.
CONV_LAYERS = (("conv1", 64), ("conv2", 128), ("conv3a", 256), ("conv3b", 256), ("conv4a", 512), ("conv4b", 512),
               ("conv5a", 512), ("conv5b", 512))
FC_LAYERS = ("fc6", "fc7", "fc8")
# max-pool (T, H, W) kernel == stride after these convs: pool1 keeps time; pool5 also pads H and W by 1
POOL_KERNELS = {"conv1": (1, 2, 2), "conv2": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2), "conv5b": (2, 2, 2)}
POOL5_PADDING = (0, 1, 1)
SPORTS1M_CLASSES = 487


def _from_dict(cls, data: dict[str, Any]):
    """Build a dataclass from a dict, ignoring unknown keys and restoring tuples."""
    known = {f.name for f in fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    return cls(**values)


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int = 101  # UCF101 by default; fc8's width
    width: float = 1.0  # channel multiplier: 1.0 is the paper's C3D, 0.25 a CPU demo model
    clip_len: int = CLIP_LEN  # frames per clip (T)
    crop_size: int = CROP_SIZE  # H == W of the network input
    dropout: float = 0.5  # after fc6 and fc7
    input_scale: float = 1.0  # multiplies the mean-subtracted input; 1.0 is exact C3D
    batch_norm: bool = False  # BatchNorm3d after each conv (C3D-BN); False is exact C3D

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if self.clip_len < 16 or self.clip_len % 16:
            raise ValueError(f"clip_len must be a multiple of 16 (four temporal pools of 2), got {self.clip_len}")
        if self.crop_size < 32 or self.crop_size % 16:
            raise ValueError(f"crop_size must be a multiple of 16 and >= 32, got {self.crop_size}")

    def channels(self, base: int) -> int:
        """Width-scaled channel count, never below 8."""
        return max(8, int(round(base * self.width)))

    @property
    def pool5_hw(self) -> int:
        # four 2x spatial pools, then pool5 with padding 1: 112 -> 56 -> 28 -> 14 -> 7 -> 4
        return (self.crop_size // 16 + 2) // 2

    @property
    def pool5_t(self) -> int:
        # pool1 keeps T; pool2..pool5 halve it: 16 -> 16 -> 8 -> 4 -> 2 -> 1
        return self.clip_len // 16

    @property
    def fc6_in(self) -> int:
        """fc6's input width: 512 * 1 * 4 * 4 = 8192 at the paper's defaults."""
        return self.channels(512) * self.pool5_t * self.pool5_hw**2

    @property
    def fc_width(self) -> int:
        return self.channels(4096)

    @property
    def gflops(self) -> float:
        """Floating-point operations of one clip, in GFLOP (2 per multiply-add; 77 at the paper's defaults).

        What a row's speed is held against the machine's measured matrix rate with (``c3d-rt bench``).
        """
        t, hw, c_in, macs = self.clip_len, self.crop_size, 3, 0
        for name, base in CONV_LAYERS:
            c_out = self.channels(base)
            macs += c_in * c_out * 27 * t * hw * hw
            if name in POOL_KERNELS:
                kt, kh, _ = POOL_KERNELS[name]
                t, hw = t // kt, (hw + 2 * POOL5_PADDING[1] * (name == "conv5b")) // kh
            c_in = c_out
        macs += self.fc6_in * self.fc_width + self.fc_width * self.fc_width + self.fc_width * self.num_classes
        return 2 * macs / 1e9

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int, int]:
        return (batch, 3, self.clip_len, self.crop_size, self.crop_size)  # (B, C, T, H, W)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Preprocessing:
    """How a stream of BGR uint8 frames becomes the network input."""

    clip_len: int = CLIP_LEN  # frames in a window
    frame_interval: int = 1  # take every N-th frame, in training and live alike
    resize_wh: tuple[int, int] = RESIZE_WH  # (width, height) before cropping
    crop_size: int = CROP_SIZE
    mean_bgr: tuple[float, float, float] = MEAN_BGR
    channel_order: str = CHANNEL_ORDER
    allow_hflip: bool = True  # False for data sets whose classes are defined by direction

    def __post_init__(self) -> None:
        w, h = self.resize_wh
        if self.crop_size > min(w, h):
            raise ValueError(f"crop {self.crop_size} does not fit in resize {w}x{h}")
        if self.frame_interval < 1:
            raise ValueError(f"frame_interval must be >= 1, got {self.frame_interval}")

    @property
    def center_offsets(self) -> tuple[int, int]:
        """(top, left) of the evaluation crop: rows 8:120, cols 30:142 at the defaults."""
        w, h = self.resize_wh  # odd margins round up, as the reference code's crop does
        return (h - self.crop_size + 1) // 2, (w - self.crop_size + 1) // 2

    @property
    def window_span(self) -> int:
        """Source frames from a window's first to its last, inclusive: ``(clip_len - 1) * frame_interval + 1``."""
        return (self.clip_len - 1) * self.frame_interval + 1

    def window_starts(self, num_frames: int, stride: int) -> list[int]:
        """First source frame of every window over ``num_frames`` frames, one every ``stride`` sampled frames.

        The one rule of where windows fall, for the live ring, the export's check windows and ``predict``: every
        ``frame_interval``-th frame is sampled, a window is ``clip_len`` consecutive sampled frames, and windows
        start every ``stride`` sampled frames from the first."""
        sampled = -(-num_frames // self.frame_interval)
        return [s * self.frame_interval for s in range(0, sampled - self.clip_len + 1, stride)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        return _from_dict(cls, data)

    @classmethod
    def for_model(cls, model: ModelConfig, **overrides: Any) -> "Preprocessing":
        """The preprocessing matching a model's clip length and crop."""
        if model.crop_size != CROP_SIZE and "resize_wh" not in overrides:
            scale = model.crop_size / CROP_SIZE
            overrides["resize_wh"] = (round(RESIZE_WH[0] * scale), round(RESIZE_WH[1] * scale))
        return cls(clip_len=model.clip_len, crop_size=model.crop_size, **overrides)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3  # the seed's; fc8 gets fc8_lr_mult x this
    fc8_lr_mult: float = 10.0
    optimizer: str = "sgd"  # "sgd" (the seed's fine-tuning recipe) or "adamw" (from scratch)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_size: int = 10  # StepLR period in epochs (sgd recipe)
    gamma: float = 0.1
    schedule: str = "step"  # "step" (seed) or "cosine"
    warmup_epochs: int = 0
    warmup_fraction: float = 0.0  # learning-rate warm-up as a share of the epochs (the longer of the two is used)
    grad_clip: float = 0.0  # 0 disables
    label_smoothing: float = 0.0
    workers: int = 2
    seed: int = 0
    amp: bool = True  # mixed precision where it pays (see precision); False forces fp32
    precision: str = "auto"  # auto (GPU: bf16, else fp16 + scaler; CPU: bf16 only with native bf16) | fp32 | bf16 | fp16
    channels_last: bool = False  # channels_last_3d memory format for model and clips
    compile: bool = False  # torch.compile the model for training
    clips_per_video: int = 1  # clips drawn from each training video per epoch
    scale_jitter: float = 0.0  # training clips zoom in by a random window of (1 - this .. 1) x the crop
    color_jitter: float = 0.0  # training clips' contrast, brightness and channel gains vary by up to this
    augment_epochs: int = 0  # the jitters reach full strength in runs of this many epochs, shorter ones get a share
    patience: int = 0  # stop after this many epochs without a better validation top-1 (0: never)
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step (0: off); it is what is saved
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)
