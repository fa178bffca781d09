"""The PyTorch twins, under their old name: ``from bnviz.torch_ref import to_torch`` works."""

from bnviz.reference.torch import (  # noqa: F401
    TorchEngine,
    copy_into_torch,
    default_device,
    from_torch,
    param_name,
    single_threaded_torch,
    to_torch,
    torch_dtype,
    train_arms_torch,
    train_torch,
    train_twins_torch,
)
