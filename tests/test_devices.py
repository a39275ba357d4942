"""``--device``: ``auto`` picks CUDA only where torch sees it; unknown or unreachable devices are input errors."""

import pytest
import torch

from vist3a.cli import main
from vist3a.devices import resolve_device, to_module
from vist3a.errors import InputError


@pytest.fixture
def cuda_devices(monkeypatch):
    """Pretend torch sees ``count`` CUDA devices."""

    def pretend(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return pretend


def test_auto_is_cuda_only_where_torch_sees_it(cuda_devices):
    cuda_devices(0)
    assert resolve_device("auto") == "cpu"
    cuda_devices(1)
    assert resolve_device("auto") == "cuda"


def test_named_devices_are_checked_against_the_machine(cuda_devices):
    cuda_devices(2)
    assert [resolve_device(name) for name in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]
    with pytest.raises(InputError, match="sees 2 CUDA"):
        resolve_device("cuda:2")
    cuda_devices(0)
    with pytest.raises(InputError, match="sees 0 CUDA"):
        resolve_device("cuda")
    for name in ("gpu", "meta", "cuda:x", ""):
        with pytest.raises(InputError, match="unknown device"):
            resolve_device(name)


def test_a_command_refuses_an_unreachable_device_before_any_work(cuda_devices, tmp_path, capsys):
    cuda_devices(0)
    assert main(["generate", "a red cube", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "Error: device 'cuda': this machine's torch sees 0 CUDA device(s); use --device cpu"
    ]
    assert not (tmp_path / "out").exists()


def test_to_module_places_a_tensor_like_the_module():
    moved = to_module(torch.zeros(3), torch.nn.Linear(2, 2).to("meta", torch.float16))
    assert moved.device.type == "meta" and moved.dtype == torch.float16
