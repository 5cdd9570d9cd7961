"""``pytorch_model.bin`` read without torch: PyTorch's zip format, through a pickle that may only build
tensors and dicts.

A ``.bin`` file is a pickle, and a pickle can call any Python function while it loads. The unpickler
here resolves only what ``torch.load(weights_only=True)`` allows for a state dict — tensor storages,
the tensor and parameter rebuild functions, ordered dicts — and refuses any other global before it is
called, with one line naming it. Storages are read straight from the archive as numpy arrays.

Layout (torch ≥ 1.6): a zip whose one top directory holds ``data.pkl`` (the state dict, with each
storage as a persistent id ``("storage", StorageType, key, location, numel)``), ``data/<key>`` (the
raw bytes of each storage) and optionally ``byteorder``. Older files (a bare pickle stream) are refused
with the way to convert them.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf.core.errors import UserError

BFLOAT16 = "bfloat16"  # numpy has none: read as uint16, widened to float32

STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "BFloat16Storage": BFLOAT16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Unread:
    """A storage not read (:func:`check_pytorch_bin` resolves the pickle's globals and structure only)."""


class _Storage:
    """A storage type named by the pickle (``torch.FloatStorage``): only its dtype matters here."""

    def __init__(self, dtype: Any):
        self.dtype = dtype


def _rebuild_tensor_v2(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                       requires_grad: bool = False, backward_hooks: Any = None, metadata: Any = None) -> np.ndarray:
    if isinstance(storage, _Unread):
        return storage
    if not size:
        return np.array(storage[offset])
    itemsize = storage.dtype.itemsize
    span = 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or offset + span > storage.size:
        raise pickle.UnpicklingError(f"a tensor of shape {tuple(size)} reaches past its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.ascontiguousarray(view)


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False, backward_hooks: Any = None) -> np.ndarray:
    return data


def _rebuild_parameter_with_state(data: np.ndarray, requires_grad: bool, backward_hooks: Any, state: Any) -> np.ndarray:
    return data


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): _Storage(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class RefusedGlobal(pickle.UnpicklingError):
    pass


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, byteorder: str, read: bool):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder, self.read = archive, prefix, byteorder, read
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage, key, _location, numel = pid
        key = str(key)
        if not self.read:
            return _Unread()  # type: ignore[return-value]
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage data/{key} is missing from the archive") from None
            self.storages[key] = _as_array(raw, storage.dtype, self.byteorder)
        array = self.storages[key]
        if array.size < int(numel):
            raise pickle.UnpicklingError(f"storage data/{key} holds {array.size} values, the pickle says {numel}")
        return array


def _as_array(raw: bytes, dtype: Any, byteorder: str) -> np.ndarray:
    if dtype == BFLOAT16:
        halves = np.frombuffer(raw, dtype=np.dtype("<u2" if byteorder == "little" else ">u2"))
        return (halves.astype(np.uint32) << 16).view(np.float32)
    dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    return np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype), copy=False)


def read_pytorch_bin(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict in ``path`` (a ``torch.save`` zip archive) as numpy arrays; a one-line
    :class:`UserError` for anything else, and for any pickle that asks for more than tensors."""
    return _load(Path(path), read=True)


def check_pytorch_bin(path: str | Path) -> None:
    """What :func:`read_pytorch_bin` refuses, found without reading the tensors (milliseconds)."""
    _load(Path(path), read=False)


def _load(path: Path, read: bool) -> dict[str, Any]:
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: a PyTorch file in the format before torch 1.6 (not a zip archive), which is read "
                        "only with torch; convert it once: torch.save(torch.load(f), f) with torch ≥ 1.6, or "
                        "save_pretrained(safe_serialization=True)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise UserError(f"{path}: a zip archive but not a torch.save file (no <name>/data.pkl in it)")
        prefix = pickles[0].split("/")[0]
        names = set(archive.namelist())
        byteorder = (archive.read(f"{prefix}/byteorder").decode().strip()
                     if f"{prefix}/byteorder" in names else "little")
        with archive.open(pickles[0]) as f:
            try:
                state = _WeightsUnpickler(f, archive, prefix, byteorder, read).load()
            except RefusedGlobal as err:
                raise UserError(f"{path}: refused: its pickle asks for {err}, which a weights file never needs (only "
                                "tensors and dicts are read; loading it could run code)") from None
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as err:
                raise UserError(f"{path}: not a readable state dict ({type(err).__name__}: {str(err)[:120]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # saved as {"state_dict": ...} by some training scripts
    tensor = (np.ndarray,) if read else (np.ndarray, _Unread)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, tensor) for k, v in state.items()):
        raise UserError(f"{path}: holds {type(state).__name__}, not a state dict of named tensors")
    return dict(state)
