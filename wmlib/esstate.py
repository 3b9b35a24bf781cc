"""CMA-ES state on disk in a form whose loading runs no code: ``controller/es_state.npz``.

pycma's strategy (``cma.CMAEvolutionStrategy``) is a graph of plain values, numpy arrays and instances of a few
pycma classes. A pickle would store it whole, but loading a pickle calls whatever functions the file names, so a
crafted file could run any code. Here the graph is written as data instead, in one ``.npz`` file:

* every numpy array is an entry of its own (read back with ``allow_pickle=False``);
* the entry ``document`` (UTF-8 JSON) describes the rest: dicts, lists, tuples, strings, numbers (inf and nan
  included), numpy scalars, the arrays by entry name, and objects met more than once (they stay one object);
* an instance is stored as its class's name and its attributes, and rebuilt without calling its constructor
  (``cls.__new__``, then its ``__dict__``). Only the classes, functions and bound methods listed in this module
  (those a pycma state holds) can be stored or loaded: anything else is a TypeError when saving, naming where in
  the state it is, and a ValueError when loading, naming the file and what it asked for;
* a numpy ``RandomState`` is stored as its ``get_state()``. The one behind numpy's module-level functions, which
  pycma draws its samples from, is restored in place when the whole file has been read;
* the entry ``sha256`` is a checksum of all the others, checked on load.

A state saved and loaded goes on exactly as the original would: the same ``ask()`` solutions, generation after
generation. The same state always gives the same bytes (the zip entries' dates are fixed).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
from cma import (
    boundary_handler,
    evolution_strategy,
    logger,
    optimization_tools,
    options_parameters,
    recombination_weights,
    sampler,
    sigma_adaptation,
    transformations,
)
from cma.utilities import utils

FORMAT = "wmlib CMA-ES state"
VERSION = 1
DOCUMENT, CHECKSUM = "document", "sha256"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_NUMBER_KINDS = "biufc"  # booleans, integers, floats, complex numbers: the only array and scalar types stored


def qualified_name(obj) -> str:
    """``module.QualifiedName`` of a class or function: how the file names it."""
    return f"{obj.__module__}.{obj.__qualname__}"


# The classes whose instances a pycma 4.x state holds (CMA_diagonal off, the sampler, step-size adaptation and
# solution archives pycma picks for small and large dimensions). None has a constructor that is run on load, nor a
# __del__, __getattr__, __setattr__ or __setstate__ of its own (tests/test_esstate.py checks).
CLASSES = {
    qualified_name(c): c
    for c in (
        evolution_strategy.CMAEvolutionStrategy,
        evolution_strategy._CMASolutionDict_functional,
        evolution_strategy._CMASolutionDict_empty,
        evolution_strategy._CMAStopDict,
        evolution_strategy._StopTolXStagnation,
        boundary_handler.BoundNone,
        boundary_handler.BoundTransform,
        logger.CMADataLogger,
        optimization_tools.BestSolution,
        options_parameters.CMAOptions,
        options_parameters.CMAParameters,
        recombination_weights.RecombinationWeights,
        sampler.GaussFullSampler,
        sigma_adaptation.CMAAdaptSigmaCSA,
        sigma_adaptation.CMAAdaptSigmaTPA,
        sigma_adaptation._TPAParameters,
        transformations.DiagonalDecoding,
        transformations.GenoPheno,
        transformations.RoundIntegerVariables,
        utils.BlancClass,
        utils.DictFromTagsInString,
        utils.ElapsedWCTime,
        utils.MoreToWrite,
        utils.SolutionDict,
    )
}
# The functions pycma keeps in its options and attributes, stored by name.
FUNCTIONS = {
    qualified_name(f): f
    for f in (
        np.linalg.eigh,
        evolution_strategy._pass,
        options_parameters.is_feasible,
    )
}
# Bound methods, stored as (object, method name): pycma's options keep numpy's ``randn``.
METHODS = {(qualified_name(np.random.RandomState), "randn")}
_GLOBAL_RNG = np.random.randn.__self__  # the RandomState behind np.random.seed, np.random.randn, ...


class _Refused(Exception):
    """Something in a file that is not loaded (the message, without the file's name)."""


def _plain_key(key) -> bool:
    """Whether a dict key is a value stored as itself (a string, a number, None, or a tuple of those)."""
    if type(key) is tuple:
        return all(map(_plain_key, key))
    return key is None or type(key) in (bool, int, float, str)


class _Writer:
    """Turns an object graph into a JSON-able document and the arrays it refers to."""

    def __init__(self):
        self.ids: dict[int, int] = {}
        self.alive: list = []  # everything given an id, so that no other object is given its address meanwhile
        self.arrays: dict[str, np.ndarray] = {}

    def refuse(self, where: str, obj, what: str = "cannot be stored") -> TypeError:
        return TypeError(
            f"{where}: a {qualified_name(type(obj))} {what} (a CMA-ES state holds plain values, "
            "numpy arrays and the pycma classes listed in wmlib.esstate)"
        )

    def remember(self, obj) -> int:
        self.ids[id(obj)] = len(self.ids)
        self.alive.append(obj)
        return self.ids[id(obj)]

    def node(self, obj, where: str):
        kind = type(obj)
        if obj is None or kind in (bool, int, str):
            return obj
        if kind is float:
            return obj if math.isfinite(obj) else {"t": "float", "v": repr(obj)}
        if kind is tuple:
            return {"t": "tuple", "items": [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if kind is range:
            return {"t": "range", "v": [obj.start, obj.stop, obj.step]}
        if isinstance(obj, np.generic):
            if obj.dtype.kind not in _NUMBER_KINDS:
                raise self.refuse(where, obj)
            return {"t": "scalar", "dtype": obj.dtype.str, "hex": obj.tobytes().hex()}
        if id(obj) in self.ids:
            return {"t": "ref", "id": self.ids[id(obj)]}
        return self.named(obj, where) or self.container(obj, where)

    def named(self, obj, where: str):
        """A class, function or bound method (stored by name), or None for anything else."""
        if isinstance(obj, type):
            if CLASSES.get(qualified_name(obj)) is not obj:
                raise TypeError(f"{where}: the class {qualified_name(obj)} cannot be stored")
            return {"t": "class", "name": qualified_name(obj)}
        for name, f in FUNCTIONS.items():
            if f is obj:
                return {"t": "function", "name": name}
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            owner = getattr(obj, "__self__", None)
            pair = (qualified_name(type(owner)), getattr(obj, "__name__", "?"))
            if owner is None or isinstance(owner, types.ModuleType) or pair not in METHODS:
                raise TypeError(
                    f"{where}: the function or method {getattr(obj, '__qualname__', obj)!r} cannot be "
                    "stored (only those listed in wmlib.esstate)"
                )
            return {"t": "method", "self": self.node(owner, f"{where}.__self__"), "name": pair[1]}
        return None

    def container(self, obj, where: str) -> dict:
        kind = type(obj)
        if kind is np.ndarray:
            if obj.dtype.kind not in _NUMBER_KINDS:
                raise self.refuse(where, obj, f"of dtype {obj.dtype} cannot be stored")
            entry = f"a{len(self.arrays)}"
            self.arrays[entry] = obj
            return {"t": "array", "id": self.remember(obj), "entry": entry}
        if kind is np.random.RandomState:
            k = self.remember(obj)
            return {
                "t": "random_state",
                "id": k,
                "global": obj is _GLOBAL_RNG,
                "state": self.node(obj.get_state(legacy=True), f"{where}.get_state()"),
            }
        if kind is list:
            k = self.remember(obj)
            return {"t": "list", "id": k, "items": [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if kind is dict:
            k = self.remember(obj)
            return {"t": "dict", "id": k, "items": self.pairs(obj, where)}
        return self.instance(obj, where)

    def pairs(self, mapping: dict, where: str) -> list:
        out = []
        for key, value in dict.items(mapping):
            if not _plain_key(key):
                raise self.refuse(f"{where} key {key!r}", key, "cannot be a stored key")
            out.append([self.node(key, where), self.node(value, f"{where}[{key!r}]")])
        return out

    def instance(self, obj, where: str) -> dict:
        kind = type(obj)
        name = qualified_name(kind)
        if CLASSES.get(name) is not kind or not hasattr(obj, "__dict__"):
            raise self.refuse(where, obj)
        k = self.remember(obj)
        out = {"t": "object", "id": k, "class": name, "attrs": []}
        for attr, value in vars(obj).items():
            if type(attr) is not str:
                raise self.refuse(f"{where} attribute {attr!r}", attr, "cannot name an attribute")
            out["attrs"].append([attr, self.node(value, f"{where}.{attr}")])
        if isinstance(obj, dict):  # pycma's options and a few archives are dicts with attributes
            out["items"] = self.pairs(obj, where)
        elif isinstance(obj, list):
            out["items"] = [self.node(v, f"{where}[{i}]") for i, v in enumerate(list.copy(obj))]
        return out


class _Reader:
    """Rebuilds the object graph of a document, making only what the allowlists name."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.objects: dict[int, object] = {}
        self.global_rng_state = None  # set in place once everything is read

    def node(self, n):
        if n is None or type(n) in (bool, int, float, str):
            return n
        if type(n) is not dict:
            raise _Refused(f"a bare {type(n).__name__} where an entry was expected")
        read = getattr(self, f"read_{n.get('t')}", None) if type(n.get("t")) is str else None
        if read is None:
            raise _Refused(f"an entry of unknown type {n.get('t')!r}")
        return read(n)

    def made(self, n: dict, obj):
        k = n["id"]
        if type(k) is not int or k in self.objects:
            raise _Refused(f"object number {k!r} is not a new one")
        self.objects[k] = obj
        return obj

    def key(self, n):
        if type(n) is dict and n.get("t") == "tuple":
            return tuple(self.key(v) for v in n["items"])
        if type(n) is dict and n.get("t") == "float":
            return self.read_float(n)
        if type(n) is str:
            return sys.intern(n)  # one object per key, as in a state never saved: pickles of it are byte-identical
        if n is None or type(n) in (bool, int, float):
            return n
        raise _Refused(f"a dict key that is not a string, number or tuple of those ({n!r:.80})")

    def pairs(self, items: list) -> list:
        return [(self.key(k), self.node(v)) for k, v in items]

    def read_float(self, n):
        if n["v"] not in ("inf", "-inf", "nan"):
            raise _Refused(f"a float written as {n['v']!r:.40}")
        return float(n["v"])

    def read_tuple(self, n):
        return tuple(self.node(v) for v in n["items"])

    def read_range(self, n):
        start, stop, step = (int(v) for v in n["v"])
        return range(start, stop, step)

    def read_scalar(self, n):
        dtype = np.dtype(str(n["dtype"]))
        raw = bytes.fromhex(n["hex"])
        if dtype.kind not in _NUMBER_KINDS or len(raw) != dtype.itemsize:
            raise _Refused(f"a numpy scalar of dtype {dtype} and {len(raw)} bytes")
        return np.frombuffer(raw, dtype)[0]

    def read_ref(self, n):
        if n["id"] not in self.objects:
            raise _Refused(f"a reference to object number {n['id']!r}, which comes later or not at all")
        return self.objects[n["id"]]

    def read_array(self, n):
        if n["entry"] not in self.arrays:
            raise _Refused(f"a reference to the array {n['entry']!r:.40}, which is not in the file")
        return self.made(n, self.arrays[n["entry"]])

    def read_list(self, n):
        out = self.made(n, [])
        out.extend(self.node(v) for v in n["items"])
        return out

    def read_dict(self, n):
        out = self.made(n, {})
        out.update(self.pairs(n["items"]))
        return out

    def read_class(self, n):
        if n["name"] not in CLASSES:
            raise _Refused(f"refused the class {n['name']!r:.100}: not one a CMA-ES state holds")
        return CLASSES[n["name"]]

    def read_function(self, n):
        if n["name"] not in FUNCTIONS:
            raise _Refused(f"refused the function {n['name']!r:.100}: not one a CMA-ES state holds")
        return FUNCTIONS[n["name"]]

    def read_method(self, n):
        owner = self.node(n["self"])
        pair = (qualified_name(type(owner)), n["name"])
        if pair not in METHODS:
            raise _Refused(f"refused the method {'.'.join(map(str, pair))!r:.100}: not one a CMA-ES state holds")
        return getattr(owner, pair[1])

    def read_random_state(self, n):
        state = self.node(n["state"])
        if n["global"] is True:
            np.random.RandomState().set_state(state)  # checked now, set in place when the whole file is read
            self.global_rng_state = state
            return self.made(n, _GLOBAL_RNG)
        rng = np.random.RandomState()
        rng.set_state(state)
        return self.made(n, rng)

    def read_object(self, n):
        cls = CLASSES.get(n["class"])
        if cls is None:
            raise _Refused(f"refused the class {n['class']!r:.100}: not one a CMA-ES state holds")
        obj = self.made(n, cls.__new__(cls))
        attrs = {}
        for name, value in n["attrs"]:
            if type(name) is not str:
                raise _Refused(f"an attribute of {n['class']} named {name!r:.40}")
            attrs[sys.intern(name)] = self.node(value)
        obj.__dict__.update(attrs)
        if "items" in n:  # written as the base class would, past any method the class puts in between
            if issubclass(cls, dict):
                dict.update(obj, self.pairs(n["items"]))
            elif issubclass(cls, list):
                list.extend(obj, [self.node(v) for v in n["items"]])
            else:
                raise _Refused(f"items for {n['class']}, which is neither a dict nor a list")
        return obj


def checksum(entries: dict[str, np.ndarray]) -> str:
    """sha256 of every entry's name, dtype, shape and contents, in name order."""
    h = hashlib.sha256()
    for name in sorted(entries):
        a = entries[name]
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dumps(state) -> bytes:
    """The bytes of an ``es_state.npz`` holding ``state`` (a TypeError names anything that cannot be stored)."""
    writer = _Writer()
    root = writer.node(state, "state")
    doc = json.dumps(dict(format=FORMAT, version=VERSION, root=root), separators=(",", ":"), allow_nan=False)
    entries = {DOCUMENT: np.frombuffer(doc.encode("utf-8"), np.uint8), **writer.arrays}
    entries[CHECKSUM] = np.frombuffer(checksum(entries).encode("ascii"), np.uint8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, a in entries.items():
            with zf.open(zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


def _entries(data: bytes, path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, its checksum verified (and removed)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            entries = {name: z[name] for name in z.files}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable CMA-ES state ({type(exc).__name__}: {exc})") from exc
    for name, a in entries.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in _NUMBER_KINDS:
            raise ValueError(f"{path}: entry {name!r} is not an array of numbers")
    stored = entries.pop(CHECKSUM, None)
    if stored is None or DOCUMENT not in entries:
        raise ValueError(f"{path}: not a CMA-ES state file (no {DOCUMENT!r} or {CHECKSUM!r} entry)")
    if stored.tobytes() != checksum(entries).encode("ascii"):
        raise ValueError(f"{path}: checksum mismatch: the file is damaged or was altered, and is not loaded")
    return entries


def loads(data: bytes, path="<CMA-ES state>"):
    """The state ``dumps`` wrote, rebuilt; ``path`` names the file in errors (ValueError)."""
    entries = _entries(data, path)
    try:
        doc = json.loads(entries.pop(DOCUMENT).tobytes().decode("utf-8"))
        if type(doc) is not dict or doc.get("format") != FORMAT:
            raise _Refused(f"not a {FORMAT} document")
        if doc.get("version") != VERSION:
            raise _Refused(f"format version {doc.get('version')!r}; this version of wmlib reads {VERSION}")
        reader = _Reader(entries)
        state = reader.node(doc["root"])
    except _Refused as exc:
        raise ValueError(f"{path}: {exc}; nothing in it was loaded") from None
    except Exception as exc:  # a malformed document: only this module's code has run on it
        raise ValueError(f"{path}: not a valid CMA-ES state ({type(exc).__name__}: {exc})") from None
    if reader.global_rng_state is not None:
        _GLOBAL_RNG.set_state(reader.global_rng_state)
    return state


def load(path):
    """The state saved at ``path``; numpy's global random generator is set to the state saved with it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no CMA-ES state there")
    return loads(path.read_bytes(), path)
