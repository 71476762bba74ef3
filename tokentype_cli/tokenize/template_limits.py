"""Bounds on one rendering of a chat template: a template is untrusted code.

jinja's sandbox keeps a template from reaching the machine, not from spending it: `'x' * 10**10`,
a string doubled in a loop, `lipsum(10**8)` or `center(10**10)` ask for gigabytes, and two nested
`range(100000)` loops run for hours. Every place a template can grow a value or spend time is
checked here, before the work is done where the size can be known first:

- the rendering: at most `chars` characters (twice --max-line-bytes), and no value it builds
  (a string, a list) larger than that;
- everything built along the way (concatenations, filter and method results, text that macros,
  set blocks and call blocks capture before it is written): at most PRODUCED_FACTOR x `chars`;
- steps (loop iterations, calls, filters, operators on strings): STEP_BASE plus STEP_PER_ITEM per
  message, content part, tool call, tool and document of the conversation.

Real templates spend a few steps and a few times the conversation's size per message, far inside
these. The environment (BoundedEnvironment) reads the budget of the rendering running on its
thread (`active`). jinja2 is imported when the environment is built, not with this module.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

PRODUCED_FACTOR = 16
STEP_BASE = 100_000
STEP_PER_ITEM = 100
_POWER_BITS = 1 << 16  # integers past this are no template's business
_TOJSON_INDENT = 1024
_SHORT = 1 << 12
CONCAT = "__tokentype_concat"  # the filter `~` and captured output are compiled to
_DICT_ATTRIBUTES = frozenset(dir(dict))
_VERDICTS = 4096  # (type, attribute) verdicts the sandbox's getattr keeps


_STEPS_WHY = (
    f"{STEP_BASE:,} plus {STEP_PER_ITEM} per message, content part, tool call, tool and document"
)


class LimitExceeded(Exception):
    """A rendering went past one of its limits; the message says which."""


@dataclass(frozen=True)
class Limits:
    chars: int  # the rendering, and any one value built on the way
    steps: int
    chars_why: str = "twice --max-line-bytes"
    steps_why: str = ""

    @classmethod
    def for_conversation(cls, max_line_bytes: int, items: int) -> Limits:
        return cls(2 * max_line_bytes, STEP_BASE + STEP_PER_ITEM * items, steps_why=_STEPS_WHY)


class Budget:
    """What one rendering has spent."""

    __slots__ = ("limits", "produced", "steps")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = 0
        self.produced = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.steps:
            raise LimitExceeded(
                f"it ran more than {self.limits.steps:,} steps (loop iterations, calls, filters"
                f" and operators; the limit is {self.limits.steps_why})"
            )

    def size(self, n: int, what: str) -> None:
        """Refuse a value of `n` characters (or items) before it is built; count it as built."""
        if n > self.limits.chars:
            raise LimitExceeded(
                f"{what} of {n:,} characters is over the limit of {self.limits.chars:,}"
                f" ({self.limits.chars_why})"
            )
        self.produced += n
        if self.produced > PRODUCED_FACTOR * self.limits.chars:
            raise LimitExceeded(
                f"it built more than {PRODUCED_FACTOR * self.limits.chars:,} characters in all"
                f" (the limit is {PRODUCED_FACTOR} times {self.limits.chars_why})"
            )

    def value(self, result: object, what: str) -> None:
        if isinstance(result, (str, list, tuple)):
            self.size(len(result), what)


_local = threading.local()
# Compile-time constant folding and renderings outside chat.py see these.
_DEFAULT = Limits(chars=16 << 20, steps=STEP_BASE, steps_why=f"{STEP_BASE:,}")


def current() -> Budget:
    budget = getattr(_local, "budget", None)
    if budget is None:
        budget = _local.budget = Budget(_DEFAULT)
    return budget


class active:  # lower case: it is used as a function, `with active(limits) as budget`
    """The budget of the rendering about to run on this thread (a class: a generator-based
    context manager cost more than the checks it scopes, once per conversation)."""

    __slots__ = ("limits", "previous")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.previous: Budget | None = None

    def __enter__(self) -> Budget:
        self.previous = getattr(_local, "budget", None)
        budget = _local.budget = Budget(self.limits)
        return budget

    def __exit__(self, *exc: object) -> None:
        _local.budget = self.previous


def _weight(value: object) -> int:
    """Characters (or items) a value holds, one level of nesting deep: enough to see
    `[long] * n` coming without walking what a template cannot have built past the limits."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(len(v) for v in value if isinstance(v, (str, list, tuple, dict)))
    return 1


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _width(budget: Budget, width: object, base: int, what: str) -> None:
    n = _int(width)
    if n is not None:
        budget.size(max(n, base), what)


_PERCENT = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_NUMBER = re.compile(r"\{[^{}]*?(\d+)[^{}]*\}")


def _check_percent(budget: Budget, text: object, args: object) -> None:
    if not isinstance(text, str):
        return
    values = args if isinstance(args, tuple) else (args,)
    for match in _PERCENT.finditer(text):
        for group in match.groups():
            if group == "*":
                for value in values:
                    _width(budget, value, 0, "a %-format width")
            elif group:
                _width(budget, int(group), 0, "a %-format width")
    budget.size(len(text) + sum(_weight(v) for v in values), "a %-formatted string")


def _check_format(budget: Budget, text: str) -> None:
    for match in _BRACE_NUMBER.finditer(text):
        _width(budget, int(match.group(1)), 0, "a format width")


def _check_str_method(budget: Budget, owner: str, name: str, args: tuple, kwargs: dict) -> None:
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        _width(budget, kwargs.get("width", first), len(owner), f"str.{name}()")
    elif name == "expandtabs":
        size = _int(kwargs.get("tabsize", first if args else 8))
        if size is not None:
            budget.size(len(owner) + owner.count("\t") * max(size, 0), "str.expandtabs()")
    elif name == "replace" and len(args) >= 2:
        _check_replace(budget, owner, args[0], args[1])
    elif name == "join" and isinstance(first, (list, tuple)):
        budget.size(_weight(first) + len(owner) * max(len(first) - 1, 0), "str.join()")
    elif name in ("format", "format_map"):
        _check_format(budget, owner)
    elif name in ("translate", "maketrans"):
        raise LimitExceeded(f"str.{name}() can grow a string without bound and is not allowed")


def _check_replace(budget: Budget, text: object, old: object, new: object) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = text.count(old) if old else len(text) + 1
        budget.size(len(text) + count * max(len(new) - len(old), 0), "a replace() result")


def _precheck_filter(budget: Budget, name: str, args: tuple, kwargs: dict) -> None:
    value = args[0] if args else None
    rest = args[1:]
    if name == "center":
        _width(budget, kwargs.get("width", rest[0] if rest else None), 0, "center()")
    elif name == "indent" and isinstance(value, str):
        width = kwargs.get("width", rest[0] if rest else 4)
        pad = len(width) if isinstance(width, str) else _int(width) or 0
        budget.size(len(value) + pad * (value.count("\n") + 1), "indent()")
    elif name == "format":
        _check_percent(budget, value, tuple(rest) or kwargs)
    elif name == "join" and isinstance(value, (list, tuple)):
        separator = kwargs.get("d", rest[0] if rest else "")
        joins = len(separator) * max(len(value) - 1, 0) if isinstance(separator, str) else 0
        budget.size(_weight(value) + joins, "join()")
    elif name == "replace" and len(rest) >= 2:
        _check_replace(budget, value, rest[0], rest[1])
    elif name == "tojson":
        indent = kwargs.get("indent", rest[1] if len(rest) > 1 else None)
        pad = len(indent) if isinstance(indent, str) else _int(indent) or 0
        if pad > _TOJSON_INDENT:
            raise LimitExceeded(f"tojson(indent={pad:,}) is over the limit of {_TOJSON_INDENT:,}")


def bounded_filter(name: str, func):
    """`func` as a filter that counts a step, refuses sizes it can see coming, and counts what it
    built. It takes the context, so jinja never runs it at compile time on constants, where no
    budget applies."""
    from jinja2.utils import _PassArg, pass_context

    passes = _PassArg.from_obj(func)

    @pass_context
    def bounded(context, *args, **kwargs):
        budget = current()
        budget.step()
        _precheck_filter(budget, name, args, kwargs)
        if passes is _PassArg.context:
            result = func(context, *args, **kwargs)
        elif passes is _PassArg.eval_context:
            result = func(context.eval_ctx, *args, **kwargs)
        elif passes is _PassArg.environment:
            result = func(context.environment, *args, **kwargs)
        else:
            result = func(*args, **kwargs)
        budget.value(result, f"the {name} filter's result")
        return result

    return bounded


def _concat(items: list) -> str:
    """`a ~ b` and the text a macro, set block or call block captures, counted as built."""
    budget = current()
    parts = [x if isinstance(x, str) else str(x) for x in items]
    budget.size(sum(map(len, parts)), "a concatenation")
    return "".join(parts)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    # About 8 characters a word, `max` words a paragraph at most.
    from jinja2.utils import generate_lorem_ipsum

    current().size((_int(n) or 0) * (_int(max) or 0) * 8, "lipsum()")
    return generate_lorem_ipsum(n, html, min, max)


def bounded_environment(**kwargs):
    """transformers' sandbox (an ImmutableSandboxedEnvironment with `kwargs`), with every way to
    grow a value or spend time counted; call bound_filters() once its filters are all set."""
    from jinja2.runtime import Macro
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        """transformers' sandbox, with every way to grow a value or spend time counted."""

        intercepted_binops = frozenset({"+", "*", "**", "%"})

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.verdicts: dict[tuple[type, str], bool] = {}
            self.globals["lipsum"] = _lipsum
            self.filters[CONCAT] = lambda items: _concat(items)

        def bound_filters(self, skip: tuple[str, ...] = ()) -> None:
            """Wrap every filter (call once the environment's filters are all set)."""
            for name, func in list(self.filters.items()):
                if name not in skip and name != CONCAT:
                    self.filters[name] = bounded_filter(name, func)

        def call_binop(self, context, operator: str, left, right):
            # Templates join strings with + on every message: short ones cost no bookkeeping (a
            # loop building a long one is bounded by its steps, and the result by this check).
            if (
                operator == "+"
                and type(left) is str
                and type(right) is str
                and len(left) + len(right) < _SHORT
            ):
                return left + right
            budget = current()
            budget.step()
            if operator == "+":
                if (isinstance(left, str) and isinstance(right, str)) or (
                    isinstance(left, (list, tuple)) and isinstance(right, (list, tuple))
                ):
                    budget.size(_weight(left) + _weight(right), "a + result")
            elif operator == "*":
                if _int(left) is not None and isinstance(right, (str, list, tuple)):
                    left, right = right, left
                count = _int(right)
                if isinstance(left, (str, list, tuple)) and count is not None:
                    budget.size(_weight(left) * max(count, 0), "a * result")
                elif (
                    count is not None
                    and _int(left) is not None
                    and left.bit_length() + count.bit_length() > _POWER_BITS
                ):
                    raise LimitExceeded(f"an integer product over {_POWER_BITS:,} bits")
            elif operator == "**":
                base, power = _int(left), _int(right)
                if (
                    base is not None
                    and power is not None
                    and abs(base) > 1
                    and power * base.bit_length() > _POWER_BITS
                ):
                    raise LimitExceeded(f"an integer power over {_POWER_BITS:,} bits")
            elif operator == "%":
                _check_percent(budget, left, right)
            return self.binop_table[operator](left, right)

        def getattr(self, obj, attribute):
            # `message.role` on a message dict: the sandbox tries the attribute first and
            # takes the key once that has raised AttributeError, an exception per access. A
            # plain dict whose attribute it is not goes straight to the key, as it ends up.
            kind = type(obj)
            if kind is dict and attribute not in _DICT_ATTRIBUTES:
                try:
                    return obj[attribute]
                except (TypeError, LookupError):
                    return self.undefined(obj=obj, name=attribute)
            # The rest is the sandbox's getattr, with its verdict on an attribute asked once per
            # type and name: its checks (an underscore, internal attributes of functions, code
            # and frames, methods that modify a known mutable type) read nothing else, and
            # asking on every access (ns.flag, loop.index, str methods) was most of a rendering.
            try:
                value = getattr(obj, attribute)
            except AttributeError:
                try:
                    return obj[attribute]
                except (TypeError, LookupError):
                    return self.undefined(obj=obj, name=attribute)
            wrapped = self.wrap_str_format(value)
            if wrapped is not None:
                return wrapped
            safe = self.verdicts.get((kind, attribute))
            if safe is None:
                if len(self.verdicts) >= _VERDICTS:  # `attr(name)` can ask for any name
                    self.verdicts.clear()
                safe = self.is_safe_attribute(obj, attribute, value)
                self.verdicts[kind, attribute] = safe
            return value if safe else self.unsafe_undefined(obj, attribute)

        def call(__self, __context, __obj, *args, **kwargs):
            budget = current()
            budget.step()
            if not isinstance(__obj, Macro):  # a macro's output is counted as it is built
                target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped
                owner = getattr(target, "__self__", None)
                if isinstance(owner, str):
                    _check_str_method(budget, owner, getattr(target, "__name__", ""), args, kwargs)
            result = super().call(__context, __obj, *args, **kwargs)
            if type(result) is str or isinstance(result, (list, tuple)):
                budget.value(result, "a call's result")
            return result

    return BoundedEnvironment(**kwargs)
