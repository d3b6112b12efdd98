"""MAGVIT-v2 image tokenizer (VQGAN-style conv encoder/decoder + lookup-free quantizer), weight-compatible.

Module names reproduce the official state-dict keys (`encoder.down.{i}.block.{j}.conv1`, `decoder.up.{i}.upsample.conv`,
`quantize.embedding`, ...), so `showlab/magvitv2` loads strictly. The official model hard-codes its hyper-parameters;
here they live in `MagvitConfig` (`MagvitConfig.official()` is the released tokenizer: 256 px -> 16x16 codes of 13 bits).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import (CHECKPOINT_FILES, WEIGHT_FILES, find_weights, load_checked, read_json_object,
                           read_state_dict, resolve, weights_bytes)
from ..errors import CheckpointError, ConfigError, InputError
from ..fields import check_field_types
from ..files import saved
from ..hardware import check_device, check_dtype
from .lfq import LFQOutput, LookupFreeQuantizer, code_bits

CONFIG_MARKER = "showo_magvit"  # key of our config.json format; its value is the format version
CONFIG_VERSION = 1
OWN_WEIGHTS = "model.safetensors"


@dataclass
class MagvitConfig:
    """Hyper-parameters of MAGVIT-v2. Defaults are the official hard-coded values (spec 7.3/7.4)."""

    encoder_ch: int = 128
    encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)
    encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)  # per level
    decoder_ch: int = 128
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)  # per level, level 0 = full resolution
    z_channels: int = 13  # = LFQ codebook_dim; codebook size 2**z_channels
    resolution: int = 256  # nominal image size (informational: the network is fully convolutional)
    dropout: float = 0.0
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self) -> None:
        check_field_types(MagvitConfig, vars(self), "MAGVIT config")
        for name in ("encoder_ch_mult", "encoder_num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        for side in ("encoder", "decoder"):
            ch, mult, blocks = (getattr(self, f"{side}_{k}") for k in ("ch", "ch_mult", "num_res_blocks"))
            if not mult or len(mult) != len(blocks):
                raise ConfigError(f"{side}: ch_mult {mult} and num_res_blocks {blocks} must be non-empty and equally long")
            if min(blocks) < 1 or min(mult) < 1:
                raise ConfigError(f"{side}: every level needs >= 1 res block and a positive multiplier")
            if any(ch * m % 32 for m in mult):
                raise ConfigError(f"{side}: channels {ch} x {mult} must be multiples of 32 (GroupNorm with 32 groups)")
        if len(self.encoder_ch_mult) != len(self.decoder_ch_mult):
            raise ConfigError("encoder and decoder must have the same number of levels (same down/up-sampling factor)")
        if not 1 <= self.z_channels <= 24:
            raise ConfigError(f"z_channels must be in 1..24 (codebook 2**z_channels), got {self.z_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.resolution < 1 or self.resolution % self.downsample_factor:
            raise ConfigError(f"resolution must be a positive multiple of the downsampling factor "
                              f"{self.downsample_factor}, got {self.resolution}")

    @classmethod
    def official(cls) -> "MagvitConfig":
        """The released `showlab/magvitv2` tokenizer (95.5M elements, 8192 codes, 16x downsampling)."""
        return cls()

    @classmethod
    def from_official_kwargs(cls, encoder_kwargs: dict, decoder_kwargs: dict,
                             quantizer_kwargs: dict | None = None) -> "MagvitConfig":
        """Map the official `VQGANEncoder(**)` / `VQGANDecoder(**)` / `LFQuantizer(**)` arguments onto a config."""
        enc, dec = dict(encoder_kwargs), dict(decoder_kwargs)
        z = int(enc.get("z_channels", 13))
        if int(dec.get("z_channels", 13)) != z or int((quantizer_kwargs or {}).get("codebook_dim", z)) != z:
            raise ConfigError("encoder z_channels, decoder z_channels and LFQ codebook_dim must be equal")
        if enc.get("double_z") or dec.get("double_z"):
            raise ConfigError("double_z is not supported (MAGVIT-v2 uses a single z)")
        cfg = cls(encoder_ch=enc.get("ch", 128), encoder_ch_mult=enc.get("ch_mult", cls.encoder_ch_mult),
                  encoder_num_res_blocks=enc.get("num_res_blocks", cls.encoder_num_res_blocks),
                  decoder_ch=dec.get("ch", 128), decoder_ch_mult=dec.get("ch_mult", cls.decoder_ch_mult),
                  decoder_num_res_blocks=dec.get("num_res_blocks", cls.decoder_num_res_blocks),
                  z_channels=z, resolution=enc.get("resolution", 256), dropout=enc.get("dropout", 0.0),
                  in_channels=enc.get("in_ch", 3), out_channels=dec.get("out_ch", 3))
        levels = {cfg.resolution // 2 ** i for i in range(len(cfg.encoder_ch_mult))}
        for kw in (enc, dec):
            if levels & set(kw.get("attn_resolutions", [5])):
                raise ConfigError(f"attention inside levels (attn_resolutions {kw['attn_resolutions']}) is not supported")
        return cfg

    @property
    def codebook_size(self) -> int:
        return 2 ** self.z_channels

    @property
    def downsample_factor(self) -> int:
        """Pixels per code along each side (16 for the official model)."""
        return 2 ** (len(self.encoder_ch_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MagvitConfig":
        """Inverse of `to_dict`; unknown keys are an error (a typo must not silently give the default)."""
        check_field_types(cls, data, "MAGVIT config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise ConfigError(f"unknown MAGVIT config keys: {', '.join(unknown)}")
        return cls(**data)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), spelled as the official code (F.silu differs in the last bit)."""
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    """norm-swish-conv twice, plus a 1x1 `nin_shortcut` when the channel count changes."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all h*w positions (1x1 conv projections), residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).reshape(b, c, h * w) for proj in (self.q, self.k, self.v))
        # Explicit matmul/softmax in the official order (not SDPA): bit-identical latents on CPU, so codes near a
        # sign boundary agree with the official tokenizer.
        attn = torch.softmax((q.transpose(1, 2) @ k) * c ** -0.5, dim=-1)  # [b, query, key]
        return x + self.proj_out((v @ attn.transpose(1, 2)).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then a stride-2 3x3 conv (halves h and w)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """`n` res blocks cin -> cout, then an optional `downsample` (encoder) or `upsample` (decoder)."""

    def __init__(self, cin: int, cout: int, n: int, dropout: float, resample: str | None):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if j == 0 else cout, cout, dropout) for j in range(n))
        self.resample = resample
        if resample == "downsample":
            self.downsample = Downsample(cout)
        elif resample == "upsample":
            self.upsample = Upsample(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return getattr(self, self.resample)(x) if self.resample else x


class Mid(nn.Module):
    """The bottleneck: res block, global attention, res block."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Pixels [B,3,H,W] -> latents [B,z,H/f,W/f] (ends with `quant_conv`, as the official encoder does)."""

    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        ch, n_levels = cfg.encoder_ch, len(cfg.encoder_ch_mult)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        levels, cin = [], ch
        for i, (mult, n) in enumerate(zip(cfg.encoder_ch_mult, cfg.encoder_num_res_blocks)):
            levels.append(Level(cin, ch * mult, n, cfg.dropout, "downsample" if i < n_levels - 1 else None))
            cin = ch * mult
        self.down = nn.ModuleList(levels)
        self.mid = Mid(cin, cfg.dropout)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.conv_out(swish(self.norm_out(self.mid(h))))
        return self.quant_conv(h)


class Decoder(nn.Module):
    """Latents [B,z,h,w] -> pixels [B,3,f*h,f*w]; levels run from the last (`up[-1]`) down to `up[0]`."""

    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        ch, mults = cfg.decoder_ch, cfg.decoder_ch_mult
        cin = ch * mults[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = Mid(cin, cfg.dropout)
        levels: list[Level] = []
        for i in reversed(range(len(mults))):
            levels.insert(0, Level(cin, ch * mults[i], cfg.decoder_num_res_blocks[i], cfg.dropout,
                                   "upsample" if i > 0 else None))
            cin = ch * mults[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.out_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


class MagvitV2(nn.Module):
    """The MAGVIT-v2 tokenizer: `get_code` (pixels in [-1,1] -> raster codes) and `decode_code` (codes -> pixels)."""

    def __init__(self, config: MagvitConfig | None = None):
        super().__init__()
        self.config = config if config is not None else MagvitConfig.official()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quantize = LookupFreeQuantizer(self.config.z_channels)

    def _check_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        f, c = self.config.downsample_factor, self.config.in_channels
        peak = _check_floats("pixels", pixels, "in [-1, 1], as image_io.preprocess makes them")
        if (pixels.dim() != 4 or pixels.shape[1] != c or pixels.shape[2] % f or pixels.shape[3] % f
                or 0 in pixels.shape):
            raise InputError(f"pixels must be [B, {c}, H, W] with B >= 1 and H, W positive multiples of {f}, got "
                             f"{tuple(pixels.shape)}")
        if peak > 1.5:  # 0..255 pixels were encoded as they were
            raise InputError(f"pixels must lie in [-1, 1] (image_io.preprocess makes them so), got values up to "
                             f"{peak:g}")
        return pixels.to(self.encoder.conv_in.weight.dtype)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, LFQOutput]:
        """Reconstruction and quantizer output (losses) of pixels in [-1,1]; the training entry point."""
        q = self.quantize(self.encoder(self._check_pixels(pixels)))
        return self.decoder(q.z_q), q

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_q [B,C,h,w], codes [B,h*w]) of pixels [B,3,H,W] in [-1,1]."""
        q = self.quantize(self.encoder(self._check_pixels(pixels)))
        return q.z_q, q.indices.reshape(pixels.shape[0], -1)

    def get_code(self, pixels: torch.Tensor) -> torch.Tensor:
        """Codes [B, h*w] (int64, raster order) of pixels [B,3,H,W] in [-1,1]."""
        return self.encode(pixels)[1]

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Pixels (roughly [-1,1]) of latents [B,C,h,w]."""
        c = self.config.z_channels
        _check_floats("z_q", z_q, "the quantized latents encode returns")
        if z_q.dim() != 4 or z_q.shape[1] != c:
            raise InputError(f"z_q must be [B, {c}, h, w], got {tuple(z_q.shape)}")
        return self.decoder(z_q.to(self.decoder.conv_in.weight.dtype))

    def decode_code(self, codes: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Pixels [B,3,f*h,f*w] of raster codes [B, h*w]; `shape=(h, w)`, None for a square grid."""
        if not isinstance(codes, torch.Tensor):
            raise InputError(f"codes must be a tensor of integer codes, got {type(codes).__name__}")
        return self.decoder(self.quantize.get_codebook_entry(codes, shape))

    # ---- checkpoints -------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, config: MagvitConfig | None = None, *,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "MagvitV2":
        """Load the official `showlab/magvitv2` layout or our own `save_pretrained` directory (or a weight file).

        Official: `config.json` without hyper-parameters + `pytorch_model.safetensors` (or `.bin`) -> official config.
        Ours: `config.json` with `showo_magvit` and every `MagvitConfig` field + `model.safetensors`.
        `config` overrides whatever `config.json` says. Keys and shapes are checked strictly (`CheckpointError`).
        """
        check_dtype(dtype)
        device = check_device(device)
        if config is not None and not isinstance(config, MagvitConfig):
            raise ConfigError(f"config must be a MagvitConfig or None, got {type(config).__name__}")
        path = resolve(path_or_id, allow_patterns=["config.json", *WEIGHT_FILES], needs=CHECKPOINT_FILES)
        if path.is_file():
            weights, found = path, None
        else:
            found = _read_config(path / "config.json")
            names = (OWN_WEIGHTS, *[n for n in WEIGHT_FILES if n != OWN_WEIGHTS]) if found else WEIGHT_FILES
            weights = find_weights(path, names)
        cfg = config or found or MagvitConfig.official()
        state = read_state_dict(weights)
        with torch.device("meta"):
            model = cls(cfg)
        model = model.to_empty(device="cpu")  # every tensor is overwritten below; skip the random init
        load_checked(model, state, what=f"MAGVIT-v2 weights {weights}")
        _check_codebook(model.quantize, weights)
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `model.safetensors` and `config.json` (our format) into `directory`, atomically (other files there
        are kept)."""
        return saved(directory, "the image tokenizer", self.write_files)

    def write_files(self, folder: Path) -> None:
        """The weights and config.json into `folder`, as they are (`save_pretrained` is the atomic way)."""
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        (folder / OWN_WEIGHTS).write_bytes(weights_bytes(state))
        text = json.dumps({CONFIG_MARKER: CONFIG_VERSION, **self.config.to_dict()}, indent=2) + "\n"
        (folder / "config.json").write_text(text)


def _check_floats(name: str, x: object, what: str) -> float:
    """The largest magnitude in `x` (0 when empty); a one-line InputError unless `x` is a tensor of finite floats
    (uint8 pixels were taken as they were, and NaN ones encoded to arbitrary codes). One pass over the values:
    NaN and infinity come out in the maximum too (the training step calls this on every batch)."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a tensor ({what}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be floats ({what}), got {x.dtype}")
    peak = float(x.abs().amax()) if x.numel() else 0.0
    if not math.isfinite(peak):
        raise InputError(f"{name} must be finite (found NaN or infinity)")
    return peak


def _read_config(path: Path) -> MagvitConfig | None:
    """Our config from `config.json`; None for the official hyper-parameter-free file (or no file)."""
    if not path.is_file():
        return None
    data = read_json_object(path)
    if CONFIG_MARKER in data:
        if data[CONFIG_MARKER] != CONFIG_VERSION:
            raise CheckpointError(f"{path}: unsupported {CONFIG_MARKER} format version {data[CONFIG_MARKER]}")
        try:
            return MagvitConfig.from_dict({k: v for k, v in data.items() if k != CONFIG_MARKER and not k.startswith("_")})
        except (ConfigError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: invalid MAGVIT config: {e}") from None
    extra = sorted(k for k in data if not k.startswith("_"))
    if extra:
        raise CheckpointError(f"{path} is neither the official MAGVIT-v2 config (no hyper-parameters) nor showo's "
                              f"(key {CONFIG_MARKER!r}); unexpected keys: {', '.join(extra)}")
    return None


def _check_codebook(quantize: LookupFreeQuantizer, weights: Path) -> None:
    """The LFQ buffers are fixed functions of codebook_dim; anything else means a corrupt or foreign checkpoint."""
    expected = code_bits(quantize.codebook_dim)
    if not torch.equal(quantize.embedding, expected.float() * 2 - 1) or not torch.equal(
            quantize.power_vals.long(), 2 ** torch.arange(quantize.codebook_dim - 1, -1, -1)):
        raise CheckpointError(f"{weights}: quantize.embedding / quantize.power_vals are not the LFQ codebook "
                              f"(+-1 bits, MSB first) of dimension {quantize.codebook_dim}")
