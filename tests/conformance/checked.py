"""Objects that stand in for (or wrap) TensorRT objects and check every use against the real bindings.

``Checked(ctx, "IBuilderConfig")`` behaves like an ``IBuilderConfig`` of the real bindings in ``ctx.trt``:
reading an attribute that the real class lacks, setting a property that is read-only or missing, or
calling a method with arguments that fit none of its real overloads (count, names, and each value's
type: real enum members of the expected enum, values the real ``Weights``/``Dims`` accept, tensors
that are ``ITensor`` objects) is recorded in ``ctx.problems``. Every access is recorded in
``ctx.used`` as "Class.member". With a ``target`` (e.g. the project executor's network) calls are
forwarded to it after the check, and its results wrapped again; without one, results are made up
from the real return type (``ctx.returns`` overrides them per "Class.method"). Members named in
``ctx.unforwarded`` are checked but never forwarded: the weak-typing precision controls of 8.6 / 10.x
(``ILayer.precision``, ``set_output_type``), which the executor (strongly typed, like TensorRT 11) does not have.
"""

from __future__ import annotations

import re

from tests.conformance.signatures import bind_problem, bound_values, normalise_type, property_type, signatures

_ALIASES = {"IEngineInspector": "EngineInspector"}    # 8.6 docstrings name some classes by their C++ name


class Context:
    """The real module plus what the checks found: ``problems`` (list[str]) and ``used`` (set[str])."""

    def __init__(self, trt, returns=None, unforwarded=("precision", "set_output_type")):
        self.trt, self.returns, self.unforwarded = trt, dict(returns or {}), set(unforwarded)
        self.problems: list[str] = []
        self.used: set[str] = set()

    def real_class(self, type_name: str):
        name = _ALIASES.get(type_name, type_name)
        cls = getattr(self.trt, name, None)
        return cls if isinstance(cls, type) else None


def is_interface(ctx: Context, type_name: str) -> bool:
    cls = ctx.real_class(type_name)
    return cls is not None and not hasattr(cls, "__members__") and type_name not in ("Weights", "Dims") \
        and not type_name.startswith("Dims") and type_name != "Permutation"


def value_problem(ctx: Context, type_name: str, value) -> str | None:
    """Why the real bindings would not accept ``value`` for a parameter of ``type_name``, or None."""
    t = type_name
    inner = re.match(r"^(?:List|list|Sequence)\[(.+)\]$", t)
    if inner:
        if not isinstance(value, (list, tuple)):
            return f"expected a list of {inner.group(1)}, found {type(value).__name__}"
        return next(filter(None, (value_problem(ctx, inner.group(1), v) for v in value)), None)
    if t in ("int", "SupportsInt"):
        ok = hasattr(value, "__index__") and not hasattr(type(value), "__members__")
        return None if ok else f"expected an int, found {type(value).__name__}"
    if t in ("float", "SupportsFloat"):
        return None if isinstance(value, (int, float)) or hasattr(value, "__float__") else \
            f"expected a float, found {type(value).__name__}"
    if t == "bool":
        return None if type(value).__name__ in ("bool", "bool_") else f"expected a bool, found {type(value).__name__}"
    if t == "str":
        return None if isinstance(value, str) else f"expected a str, found {type(value).__name__}"
    if t in ("buffer", "Buffer"):
        return None if isinstance(value, (bytes, bytearray, memoryview)) else \
            f"expected a buffer, found {type(value).__name__}"
    return _trt_value_problem(ctx, t, value)


def _trt_value_problem(ctx: Context, t: str, value) -> str | None:
    cls = ctx.real_class(t)
    if cls is None:
        return None                    # a type the checks do not model (e.g. numpy.ndarray): accepted
    if isinstance(value, Checked):
        ok = issubclass(ctx.real_class(value._cls_name) or object, cls)
        return None if ok else f"expected {t}, found a {value._cls_name}"
    if hasattr(cls, "__members__"):
        return None if isinstance(value, cls) else \
            f"expected a member of the real {t}, found {type(value).__module__}.{type(value).__name__} {value!r}"
    if isinstance(value, cls):
        return None
    try:
        cls(value)                     # Weights(ndarray), Dims(tuple), Permutation(tuple): the real conversion
    except Exception as error:         # noqa: BLE001 - any refusal by the real type is the finding
        return f"the real {t} refuses {type(value).__name__} {value!r:.60}: {error}"
    return None


def unwrap(value):
    if isinstance(value, Checked):
        return object.__getattribute__(value, "_target")
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v) for v in value)
    return value


class Checked:
    """A checked stand-in for an instance of the real class ``cls_name`` (see the module docstring)."""

    def __init__(self, ctx: Context, cls_name: str, target=None):
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_cls_name", cls_name)
        object.__setattr__(self, "_target", target)

    def _real(self, attr: str):
        ctx, cls = self._ctx, self._ctx.real_class(self._cls_name)
        ctx.used.add(f"{self._cls_name}.{attr}")
        member = getattr(cls, attr, None) if cls is not None else None
        if member is None:
            ctx.problems.append(f"{self._cls_name}.{attr} does not exist in TensorRT {ctx.trt.__version__}")
            raise AttributeError(f"{self._cls_name}.{attr}")
        return member

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        member = self._real(attr)
        if isinstance(member, property):
            return self._result(attr, property_type(member), lambda: getattr(self._target, attr), ())
        return lambda *args, **kwargs: self._call(attr, member, args, kwargs)

    def __setattr__(self, attr: str, value) -> None:
        member = self._real(attr)
        if not isinstance(member, property) or member.fset is None:
            self._ctx.problems.append(f"{self._cls_name}.{attr} is not a settable property in "
                                      f"TensorRT {self._ctx.trt.__version__}")
            return
        problem = value_problem(self._ctx, property_type(member) or "", value)
        if problem:
            self._ctx.problems.append(f"{self._cls_name}.{attr} = ...: {problem}")
        if self._target is not None and attr not in self._ctx.unforwarded:
            setattr(self._target, attr, unwrap(value))

    def _call(self, attr, member, args, kwargs):
        sigs = signatures(member)
        sig, why = _matching(self._ctx, sigs, args, kwargs)
        if sig is None:
            self._ctx.problems.append(f"{self._cls_name}.{attr}({_show(args, kwargs)}): {why}")
        forward = lambda: getattr(self._target, attr)(*unwrap(args), **unwrap(kwargs))  # noqa: E731
        return self._result(attr, sig.returns if sig else (sigs[0].returns if sigs else ""), forward, args)

    def _result(self, attr, type_name, forward, args):
        key = f"{self._cls_name}.{attr}"
        if key in self._ctx.returns:
            return self._ctx.returns[key](*args)
        if self._target is not None and attr not in self._ctx.unforwarded:
            value = forward()
        else:
            value = _made_up(self._ctx, type_name or "")
        type_name = normalise_type(type_name or "")
        if value is not None and is_interface(self._ctx, type_name) and not isinstance(value, Checked):
            return Checked(self._ctx, _ALIASES.get(type_name, type_name), value)
        if value is not None and re.match(r"^(List|list)\[", type_name):
            item = type_name[5:-1]
            if is_interface(self._ctx, item):
                return [Checked(self._ctx, item, v) for v in value]
        return value

    def __repr__(self) -> str:
        return f"<checked {self._cls_name} of TensorRT {self._ctx.trt.__version__} -> {self._target!r}>"


class Shim:
    """The real ``trt`` module, except for the names in ``overrides``; records every name read that exists."""

    def __init__(self, ctx: Context, overrides: dict):
        self._ctx, self._overrides = ctx, overrides

    def __getattr__(self, name: str):
        # A missing name raises AttributeError as the real module does: `hasattr` guards work, and an
        # unguarded use makes the scenario fail with the traceback.
        value = self._overrides[name] if name in self._overrides else getattr(self._ctx.trt, name)
        self._ctx.used.add(f"trt.{name}")
        return value


def factory(ctx: Context, cls_name: str, target_factory=None):
    """A stand-in for the constructor of the real class ``cls_name``, checked against its ``__init__``."""

    def construct(*args, **kwargs):
        ctx.used.add(f"{cls_name}.__init__")
        sig, why = _matching(ctx, signatures(getattr(ctx.trt, cls_name).__init__), args, kwargs)
        if sig is None:
            ctx.problems.append(f"{cls_name}({_show(args, kwargs)}): {why}")
        return Checked(ctx, cls_name, target_factory() if target_factory else None)

    return construct


def _matching(ctx, sigs, args, kwargs):
    """The first overload that accepts the call, else (None, why the first one refuses it)."""
    reasons = []
    for sig in sigs:
        why = bind_problem(sig, args, kwargs) or next(
            filter(None, (f"{p.name}: {value_problem(ctx, p.type, v)}" if value_problem(ctx, p.type, v)
                          and not (v is None and p.default == "None") else None
                          for p, v in bound_values(sig, args, kwargs))), None)
        if why is None:
            return sig, None
        reasons.append(why)
    return None, "; ".join(reasons) or "no signature found in the docstring"


def _made_up(ctx: Context, type_name: str):
    t = normalise_type(type_name)
    if t == "bool":
        return True
    if t in ("int", "SupportsInt"):
        return 0
    if t == "str":
        return ""
    if is_interface(ctx, t):
        return Checked(ctx, _ALIASES.get(t, t))
    return None


def _show(args, kwargs) -> str:
    items = [f"{v!r:.40}" for v in args] + [f"{k}={v!r:.40}" for k, v in kwargs.items()]
    return ", ".join(items)
