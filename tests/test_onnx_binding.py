"""``OrtNetwork``'s I/O binding (``runtime.IoBound``), checked with the CPU provider's binding: the results equal
a plain ``session.run``, one binding is made per input shapes and kept, only the inputs that changed are bound
again, and reused output buffers are what the contract says. Reduced networks (models/small.py, random weights:
the binding is what is checked). The CUDA side (the run not waited for on torch's stream) is reviewed against
the documented run option and exercised by scripts/gpu_check.py on a GPU; its selection logic is tested here."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from liveportrait_core.models.onnx import export as ex  # noqa: E402
from liveportrait_core.models.onnx import runtime  # noqa: E402

NETS = ("motion_extractor", "warping_module")


@pytest.fixture(scope="module")
def reduced_pair(tmp_path_factory):
    """Exports of the reduced M and W, and example inputs for each."""
    from liveportrait_core.models.small import reduced_models

    models = reduced_models()
    folder = tmp_path_factory.mktemp("onnx_binding")
    tags = {n: ex.ExportTag(network=n, weights_sha256="cd" * 32, onnx=ex.onnx_version()) for n in NETS}
    paths = ex.export_modules(models.modules, folder, tags, progress=lambda _m: None)
    return paths, ex.example_inputs(models.modules)


def _net(paths, network: str, **kw) -> runtime.OrtNetwork:
    session, placement = runtime.open_session(network, paths[network], ["cpu"], paths[network].parent / "cache")
    return runtime.OrtNetwork(network, session, placement, **kw)


def _plain(net: runtime.OrtNetwork, inputs) -> dict[str, np.ndarray]:
    feeds = {n: t.numpy() for n, t in zip(net.input_names, inputs)}
    return dict(zip(net.output_names, net.session.run(list(net.output_names), feeds)))


def _as_dict(net, out) -> dict[str, torch.Tensor]:
    return out if isinstance(out, dict) else {net.output_names[0]: out}


def _same(net, got, want) -> None:
    got = _as_dict(net, got)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == torch.float32 and got[k].device.type == "cpu"
        assert np.array_equal(got[k].numpy(), want[k]), (k, float(np.abs(got[k].numpy() - want[k]).max()))


def test_bound_warping_equals_the_plain_run_and_binds_only_what_changes(reduced_pair):
    paths, inputs = reduced_pair
    net = _net(paths, "warping_module", reuse_outputs=True)
    f_s, x_d, x_s = inputs["warping_module"]
    assert net.binds_in_place(torch.device("cpu"))
    with torch.inference_mode():
        first = net(f_s, x_d, x_s)
        _same(net, first, _plain(net, (f_s, x_d, x_s)))
        first_out = first["out"].clone()
        (bound,) = net._bindings.values()  # noqa: SLF001 - one binding for the one input shape
        assert bound.binds == 3 + 3  # three inputs, three outputs
        x_d2 = x_d + 0.01  # a new driving frame: f_s and x_s are the same tensors
        second = net(f_s, kp_driving=x_d2, kp_source=x_s)
        _same(net, second, _plain(net, (f_s, x_d2, x_s)))
        assert list(net._bindings.values()) == [bound]  # noqa: SLF001 - the same binding, kept
        assert bound.binds == 6 + 1, "only the changed input is bound again; the outputs stay bound"
        assert second["out"] is first["out"], "reused output buffers: valid until the next call"
        assert not torch.equal(second["out"], first_out)
        x_d2.add_(0.01)  # the same tensor changed in place: bound by address, so the run reads the new values
        third = net(f_s, x_d2, x_s)
        _same(net, third, _plain(net, (f_s, x_d2, x_s)))
        assert bound.binds == 7


def test_kept_outputs_get_new_buffers_each_call(reduced_pair):
    """M's outputs are kept by the caller (the neutral reference, the character's keypoints): never overwritten."""
    paths, inputs = reduced_pair
    net = _net(paths, "motion_extractor")
    (x,) = inputs["motion_extractor"]
    with torch.inference_mode():
        first = net(x)
        kept = {k: v.clone() for k, v in first.items()}
        second = net(x.flip(-1).contiguous())
    _same(net, first, {k: v.numpy() for k, v in kept.items()})
    _same(net, second, _plain(net, (x.flip(-1).contiguous(),)))
    assert all(first[k].data_ptr() != second[k].data_ptr() for k in first)
    assert len(net._bindings) == 1  # noqa: SLF001


def test_a_network_on_another_provider_or_device_is_not_bound_in_place(reduced_pair):
    paths, _ = reduced_pair
    net = _net(paths, "motion_extractor")
    assert not net.binds_in_place(torch.device("cuda"))  # a CPU session fed CUDA tensors: numpy and back
    net.placement = runtime.Placement("motion_extractor", ("directml", "cpu"), {"directml": 10})
    assert not net.binds_in_place(torch.device("cpu"))  # DirectML's session.run copies host inputs itself


def test_a_cuda_run_is_left_unwaited_only_on_the_sessions_own_stream(reduced_pair, monkeypatch):
    paths, _ = reduced_pair
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: SimpleNamespace(cuda_stream=1234))
    net = _net(paths, "motion_extractor", user_stream=1234)
    opts = net._run_options(cuda)  # noqa: SLF001
    assert opts is not None and opts.get_run_config_entry(runtime.NO_SYNC_KEY) == "1"
    assert net._run_options(cuda) is opts  # noqa: SLF001 - made once
    assert net._run_options(torch.device("cpu")) is None  # noqa: SLF001
    other = _net(paths, "motion_extractor", user_stream=99)  # another current stream: ORT waits, as by default
    assert other._run_options(cuda) is None  # noqa: SLF001
    assert _net(paths, "motion_extractor")._run_options(cuda) is None  # noqa: SLF001 - no stream given
