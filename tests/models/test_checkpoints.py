"""Checkpoint loading: every layout, the architecture read from the weights, safety, bad inputs."""

from __future__ import annotations

import fractions
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
from helpers.checkpoints import (
    CallsNumpy,
    OpensFile,
    RunsCommand,
    randomize_,
    save_layout,
    save_mmaction2,
    to_tanet_official,
    to_tsn_style,
    with_module_prefix,
)

from tamdeploy.errors import CheckpointError, ModelConfigError, UnsafeCheckpointError
from tamdeploy.models import LoadedCheckpoint, create_model, load_checkpoint, save_checkpoint
from tamdeploy.models.resnet import ResNet

SIZE = 64
CLASSES = 5


def small(arch: str, **overrides: object) -> ResNet:
    overrides = {"width": 0.25, "num_classes": CLASSES, **overrides}
    return randomize_(create_model(arch, **overrides), seed=len(arch))


def sample(model: ResNet, batch: int = 1) -> torch.Tensor:
    cfg = model.config
    shape = (batch, cfg.num_segments) if cfg.is_video else (batch,)
    return torch.randn(*shape, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def assert_same_network(loaded: LoadedCheckpoint, model: ResNet) -> None:
    assert not loaded.model.training
    theirs, ours = loaded.model.state_dict(), model.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    x = sample(model)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


@pytest.fixture(scope="module")
def tanet() -> ResNet:
    return small("tanet_r50", num_segments=4)


@pytest.fixture(scope="module")
def action() -> ResNet:
    return small("action_r50", num_segments=4)


# --- every layout, output for output ------------------------------------------------------------


@pytest.mark.parametrize("old_names", [False, True], ids=["tam", "self_conv"])
def test_tanet_official(tanet: ResNet, tmp_path: Path, old_names: bool) -> None:
    path = save_layout(tanet.state_dict(), "tanet-official", tmp_path / "tanet.pth.tar", old_names=old_names)
    loaded = load_checkpoint(path)
    assert (loaded.layout, loaded.config.arch) == ("tanet-official", "tanet_r50")
    assert (loaded.config.num_segments, loaded.config.num_classes, loaded.config.width) == (4, CLASSES, 0.25)
    assert loaded.warnings == []
    assert_same_network(loaded, tanet)


def test_mmaction2_tanet_with_framework_objects(tanet: ResNet, tmp_path: Path) -> None:
    path = save_mmaction2(tanet.state_dict(), tmp_path / "tanet_mm.pth")
    loaded = load_checkpoint(path)
    assert (loaded.layout, loaded.config.arch, loaded.config.num_segments) == ("mmaction2", "tanet_r50", 4)
    assert any("inert placeholders" in w for w in loaded.warnings)
    assert not any(name.startswith("mmengine") for name in sys.modules)
    assert_same_network(loaded, tanet)


def test_mmaction2_plain_resnet_is_tsn(tmp_path: Path) -> None:
    tsn = small("tsn_r50")
    loaded = load_checkpoint(save_mmaction2(tsn.state_dict(), tmp_path / "tsn_mm.pth", tanet=False))
    assert (loaded.layout, loaded.config.arch) == ("mmaction2", "tsn_r50")
    assert_same_network(loaded, tsn)


def test_action_net_t_defaults_to_8_with_a_warning(action: ResNet, tmp_path: Path) -> None:
    loaded = load_checkpoint(save_layout(action.state_dict(), "action-net-official", tmp_path / "a.pth"))
    assert (loaded.layout, loaded.config.arch) == ("action-net-official", "action_r50")
    assert loaded.config.num_segments == 8
    assert any("num_segments=8" in w for w in loaded.warnings)


@pytest.mark.parametrize("head", ["new_fc", "base_model.fc"])
def test_action_net_t_override(action: ResNet, tmp_path: Path, head: str) -> None:
    path = save_layout(action.state_dict(), "action-net-official", tmp_path / "a.pth", head=head)
    loaded = load_checkpoint(path, num_segments=4, arch="action_r50", num_classes=CLASSES)
    assert loaded.config.num_segments == 4 and loaded.warnings == []
    assert_same_network(loaded, action)


def test_tsn_official_with_module_prefix(tmp_path: Path) -> None:
    tsn = small("tsn_r50", num_segments=3)
    path = tmp_path / "tsn.pth"
    torch.save({"state_dict": with_module_prefix(to_tsn_style(tsn.state_dict()))}, path)
    loaded = load_checkpoint(path, num_segments=3)
    assert (loaded.layout, loaded.config.arch) == ("tsn-official", "tsn_r50")
    assert_same_network(loaded, tsn)


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict+module"])
def test_senet_se_resnet_nesting_variants(tmp_path: Path, wrap: str) -> None:
    se = small("se_resnet50")
    sd = se.state_dict()
    obj = {"bare": sd, "model": {"model": sd, "epoch": 3},
           "state_dict+module": {"state_dict": with_module_prefix(sd), "best_acc": 0.5}}[wrap]
    torch.save(obj, tmp_path / "se.pth")
    loaded = load_checkpoint(tmp_path / "se.pth")
    assert (loaded.layout, loaded.config.arch, loaded.config.num_segments) == ("torchvision", "se_resnet50", None)
    assert_same_network(loaded, se)


def test_depth_101_and_tam_kernel_size_are_read_from_the_weights(tmp_path: Path) -> None:
    model = small("tanet_r101", num_segments=3, tam_kernel_size=5)
    loaded = load_checkpoint(save_layout(model.state_dict(), "mmaction2", tmp_path / "t101.pth"))
    assert (loaded.config.arch, loaded.config.depth, loaded.config.tam_kernel_size) == ("tanet_r101", 101, 5)
    assert_same_network(loaded, model)


def test_legacy_torch_format_with_plain_weights(tmp_path: Path) -> None:
    se = small("se_resnet50")
    torch.save(se.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert_same_network(load_checkpoint(tmp_path / "old.pth"), se)


def test_missing_batchnorm_counters_and_half_weights_load_with_warnings(tmp_path: Path) -> None:
    se = small("se_resnet50")
    sd = {k: v.half() if v.is_floating_point() else v for k, v in se.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pth")
    loaded = load_checkpoint(tmp_path / "old.pth")
    assert any("num_batches_tracked" in w for w in loaded.warnings)
    assert any("float16" in w for w in loaded.warnings)
    # the float32 network is the half-precision one, cast: same weights, same outputs
    se.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    theirs = loaded.model.state_dict()
    assert all(theirs[k].dtype == torch.float32 and torch.equal(theirs[k], v.float()) for k, v in sd.items()
               if v.is_floating_point())
    x = sample(se, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), se.eval()(x), rtol=1e-5, atol=1e-6)


# --- tamdeploy's own format ---------------------------------------------------------------------


def test_own_format_round_trip(tanet: ResNet, tmp_path: Path) -> None:
    source = load_checkpoint(save_layout(tanet.state_dict(), "tanet-official", tmp_path / "src.pth"))
    out = save_checkpoint(source, None, tmp_path / "out" / "tanet.pt")
    assert sorted(p.name for p in out.parent.iterdir()) == ["tanet.pt"]  # no temp file left
    loaded = load_checkpoint(out)
    assert (loaded.layout, loaded.config, loaded.warnings) == ("tamdeploy", source.config, [])
    assert torch.load(out, weights_only=True)["tamdeploy"]["source_sha256"] == source.sha256
    assert_same_network(loaded, tanet)


def test_own_format_from_a_model_keeps_t_and_allows_t_override_for_action(action: ResNet,
                                                                           tmp_path: Path) -> None:
    path = save_checkpoint(action, None, tmp_path / "action.pt")
    assert load_checkpoint(path).warnings == []
    assert load_checkpoint(path, num_segments=6).config.num_segments == 6
    assert_same_network(load_checkpoint(path), action)


def test_save_refuses_a_config_that_does_not_rebuild_the_weights(tanet: ResNet, tmp_path: Path) -> None:
    wrong = create_model("tanet_r50", width=0.25, num_classes=7, num_segments=4).config
    with pytest.raises(ModelConfigError, match="fc.weight"):
        save_checkpoint(tanet, wrong, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


# --- parameter counts of the full-size networks ---------------------------------------------------


@pytest.mark.parametrize(("arch", "overrides", "count"), [
    ("tanet_r50", {"num_segments": 8, "num_classes": 400}, 25_590_320),
    ("action_r50", {"num_segments": 8, "num_classes": 174}, 28_082_378),
    ("se_resnet50", {"num_classes": 1000}, 28_071_976),
    ("tsn_r50", {"num_classes": 400}, 24_327_632),
])
def test_full_size_parameter_counts(arch: str, overrides: dict, count: int) -> None:
    with torch.device("meta"):  # shapes only
        model = create_model(arch, **overrides)
    assert sum(p.numel() for p in model.parameters()) == count


# --- arguments that contradict the weights -------------------------------------------------------


def test_t_contradicting_tam_weights(tanet: ResNet, tmp_path: Path) -> None:
    path = save_layout(tanet.state_dict(), "tanet-official", tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match=r"num_segments=8 contradicts the TAM weights.*T=4"):
        load_checkpoint(path, num_segments=8)


def test_arch_not_matching_the_block_type(tanet: ResNet, tmp_path: Path) -> None:
    path = save_layout(tanet.state_dict(), "tanet-official", tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match=r"arch action_r50 .*action blocks.*tam blocks"):
        load_checkpoint(path, arch="action_r50")


def test_num_classes_contradicting_the_head(tanet: ResNet, tmp_path: Path) -> None:
    path = save_layout(tanet.state_dict(), "tanet-official", tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match=f"{CLASSES} classes"):
        load_checkpoint(path, num_classes=400)


# --- broken weights -----------------------------------------------------------------------------


def test_wrong_keys_are_named_with_the_layout(tanet: ResNet, tmp_path: Path) -> None:
    sd = to_tanet_official(tanet.state_dict())
    sd["module.base_model.layer2.1.net.conv9.weight"] = sd.pop("module.base_model.layer2.1.net.conv2.weight")
    torch.save({"state_dict": sd}, tmp_path / "k.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "k.pth")
    message = str(err.value)
    assert "layout tanet-official" in message
    assert "missing layer2.1.conv2.weight" in message and "unexpected layer2.1.conv9.weight" in message


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    sd = small("se_resnet50").state_dict()
    sd["layer1.0.se.fc.0.weight"] = torch.zeros(3, 64)
    torch.save(sd, tmp_path / "s.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch: layer1.0.se.fc.0.weight \[3, 64\]"):
        load_checkpoint(tmp_path / "s.pth")


def test_unknown_layout_lists_keys_and_supported_layouts(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "u.pth")
    with pytest.raises(CheckpointError, match=r"no known weight layout.*encoder.weight.*mmaction2"):
        load_checkpoint(tmp_path / "u.pth")


@pytest.mark.parametrize(("obj", "message"), [
    ({"epoch": 3, "arch": "resnet50"}, "no recognisable weights"),
    ({"state_dict": {}}, "no recognisable weights"),
    ([torch.zeros(1)], "no recognisable weights"),
    ({"state_dict": {"conv1.weight": torch.zeros(1), "note": "hi"}}, "only tensors.*'note' is a str"),
])
def test_checkpoints_without_usable_weights(tmp_path: Path, obj: object, message: str) -> None:
    torch.save(obj, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "w.pth")


# --- files that are not checkpoints ---------------------------------------------------------------


def _zip_without_torch_records(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("epoch,acc\n1,0.5\n"), "not a PyTorch checkpoint"),
    (_zip_without_torch_records, "zip archive but not a PyTorch checkpoint"),
])
def test_files_that_are_not_checkpoints(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "model.pth"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_file(tanet: ResNet, tmp_path: Path) -> None:
    whole = save_layout(tanet.state_dict(), "tanet-official", tmp_path / "whole.pth").read_bytes()
    for cut in (len(whole) // 2, 200):
        (tmp_path / "cut.pth").write_bytes(whole[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(tmp_path / "cut.pth")


# --- safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", [RunsCommand, OpensFile])
def test_code_in_the_pickle_is_refused_and_never_runs(tmp_path: Path, payload: type, zip_format: bool) -> None:
    marker = tmp_path / "pwned"
    sd = small("se_resnet50").state_dict()
    torch.save({"state_dict": sd, "meta": payload(marker)}, tmp_path / "evil.pth",
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError, match="would run code.*`trust_checkpoint`"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_data_only_namespace_functions_are_inert(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.npy"
    se = small("se_resnet50")
    torch.save({"state_dict": se.state_dict(), "meta": CallsNumpy(marker)}, tmp_path / "np.pth")
    assert_same_network(load_checkpoint(tmp_path / "np.pth"), se)
    assert not marker.exists()


def test_trust_checkpoint_loads_other_objects(tmp_path: Path) -> None:
    se = small("se_resnet50")
    torch.save({"state_dict": se.state_dict(), "lr": fractions.Fraction(1, 3)}, tmp_path / "f.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"fractions.Fraction.*`trust_checkpoint`"):
        load_checkpoint(tmp_path / "f.pth")
    loaded = load_checkpoint(tmp_path / "f.pth", trust_checkpoint=True)
    assert any("`trust_checkpoint`" in w for w in loaded.warnings)
    assert_same_network(loaded, se)


def test_framework_objects_that_cannot_be_placeheld_are_a_clear_error(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    class Slotted:  # pickles its state as a (None, slots) tuple, which no placeholder can take
        __slots__ = ("value",)

        def __init__(self) -> None:
            self.value = 1

    module = types.ModuleType("mmcv.fake")
    Slotted.__module__, Slotted.__qualname__ = "mmcv.fake", "Slotted"
    module.Slotted = Slotted
    for name, mod in (("mmcv", types.ModuleType("mmcv")), ("mmcv.fake", module)):
        monkeypatch.setitem(sys.modules, name, mod)
    torch.save({"state_dict": small("se_resnet50").state_dict(), "meta": Slotted()}, tmp_path / "s.pth")
    monkeypatch.delitem(sys.modules, "mmcv.fake")
    monkeypatch.delitem(sys.modules, "mmcv")
    with pytest.raises(CheckpointError, match=r"mmcv.fake.Slotted.*`trust_checkpoint`"):
        load_checkpoint(tmp_path / "s.pth")
