"""How other projects name the weights of the networks tamdeploy builds, and how to rename them.

Every layout is one ``Layout`` entry in ``LAYOUTS``: a regex that recognises its keys and the
regex renames that turn them into tamdeploy's (torchvision-style) names. Detection sees the keys
after any ``module.`` prefixes (``nn.DataParallel``) are stripped. Adding a layout is one entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from tamdeploy.errors import CheckpointError

_BLOCK = r"(layer\d+\.\d+)"  # ``layerX.Y``, captured
_MODULE_PREFIX = re.compile(r"^(?:module\.)+")
_MAX_NAMED = 5


@dataclass(frozen=True)
class Layout:
    name: str
    source: str  # the projects whose checkpoints use it, for messages
    detect: str  # regex that at least one key matches
    renames: tuple[tuple[str, str], ...] = ()  # (regex, replacement), applied in order to every key
    exclude: str | None = None  # regex that no key may match
    ignore: str | None = None  # regex of keys that are not part of the network (dropped)

    def matches(self, keys: Iterable[str]) -> bool:
        keys = list(keys)
        found = any(re.search(self.detect, k) for k in keys)
        return found and not (self.exclude and any(re.search(self.exclude, k) for k in keys))

    def rename(self, key: str) -> str:
        for pattern, replacement in self.renames:
            key = re.sub(pattern, replacement, key)
        return key

    def to_ours(self, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """``state_dict`` under tamdeploy's names, and the keys dropped as not part of the network."""
        out: dict[str, torch.Tensor] = {}
        dropped: list[str] = []
        for key, value in state_dict.items():
            if self.ignore and re.search(self.ignore, key):
                dropped.append(key)
                continue
            new = self.rename(key)
            if new in out:
                raise CheckpointError(f"two weights map to {new} in the {self.name} layout (one is {key})")
            out[new] = value
        return out, dropped


_BASE_MODEL = ((r"^base_model\.", ""), (r"^new_fc\.", "fc."))  # TSN-style wrapper; head is new_fc

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        name="tanet-official",
        source="TANet (liu-zhy/temporal-adaptive-module)",
        detect=r"^base_model\.layer\d+\.\d+\.(tam|self_conv)\.",
        renames=_BASE_MODEL + (
            (rf"^{_BLOCK}\.net\.", r"\1."),  # TemporalBottleneck wraps the torchvision block as ``net``
            (r"\.self_conv\.conv_f\.", ".tam.G."),  # names of the first releases
            (r"\.self_conv\.conv_g\.", ".tam.L."),
        ),
    ),
    Layout(
        name="action-net-official",
        source="ACTION-Net (V-Sense/ACTION-Net)",
        detect=r"^base_model\.layer\d+\.\d+\.conv1\.action_shift\.",
        renames=_BASE_MODEL,
    ),
    Layout(
        name="tsn-official",
        source="TSN / TSM-style code without temporal modules (base_model + new_fc)",
        detect=r"^base_model\.conv1\.weight$",
        exclude=r"\.(tam|self_conv|action_shift)\.",
        renames=_BASE_MODEL,
    ),
    Layout(
        name="mmaction2",
        source="mmaction2 TANet / TSN (backbone + cls_head, ConvModule names)",
        detect=r"^backbone\.conv1\.conv\.weight$",
        renames=(
            (r"^backbone\.conv1\.conv\.", "conv1."),
            (r"^backbone\.conv1\.bn\.", "bn1."),
            # TANet's TABlock wraps the ResNet block as ``block``; plain ResNet has no such level
            (rf"^backbone\.{_BLOCK}\.(?:block\.)?conv(\d)\.conv\.", r"\1.conv\2."),
            (rf"^backbone\.{_BLOCK}\.(?:block\.)?conv(\d)\.bn\.", r"\1.bn\2."),
            (rf"^backbone\.{_BLOCK}\.(?:block\.)?downsample\.conv\.", r"\1.downsample.0."),
            (rf"^backbone\.{_BLOCK}\.(?:block\.)?downsample\.bn\.", r"\1.downsample.1."),
            (r"^backbone\.", ""),  # the TAM (``layerX.Y.tam``) is already named like ours
            (r"^cls_head\.fc_cls\.", "fc."),
        ),
        ignore=r"^data_preprocessor\.",
    ),
    Layout(
        name="torchvision",
        source="senet.pytorch SE-ResNet, or a bare state_dict with tamdeploy's names",
        detect=r"^conv1\.weight$",
    ),
)


# what to do with a network tamdeploy does not build (the CLI shows the parameter as --model)
OWN_NETWORK_HINT = ("for a network of your own, pass its code as `model_spec=path/to/file.py:factory` with this "
                    "checkpoint (its TAM / ACTION modules are recognised by structure)")


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_MODULE_PREFIX.sub("", k): v for k, v in state_dict.items()}


def detect_layout(keys: Iterable[str], source: str) -> Layout:
    keys = list(keys)
    for layout in LAYOUTS:
        if layout.matches(keys):
            return layout
    shown = ", ".join(keys[:_MAX_NAMED]) or "none"
    known = ", ".join(f"{lay.name} ({lay.source})" for lay in LAYOUTS)
    raise CheckpointError(
        f"{source}: no known weight layout matches (first keys: {shown}); supported: {known}; {OWN_NETWORK_HINT}"
    )
