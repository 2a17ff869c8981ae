"""``pyengine.utils``: ``pyengine.utils.data`` (Dataset, TensorDataset, DataLoader) as in
torch.utils."""

from pyengine.utils import data

__all__ = ["data"]
