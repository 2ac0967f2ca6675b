"""Placement constraints and preferences: what a task requires of, and prefers in, a
worker's attributes (its labels and built-ins such as ``gpu.model``). Written as the CLI's
``--constraint`` and ``--prefer`` take them, matched as the master matches them
(``master/src/placement/PLACEMENT.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from ._pb import types_pb2
from .errors import InvalidArgument

FORMS = "KEY=VALUE, KEY!=VALUE, 'KEY in (A,B)', 'KEY not in (A,B)' or 'KEY exists'"


class Op(str, Enum):
    """A constraint's operator."""

    EQ = "="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"
    EXISTS = "exists"


_TO_PB = {
    Op.EQ: types_pb2.CONSTRAINT_OP_EQ,
    Op.NE: types_pb2.CONSTRAINT_OP_NE,
    Op.IN: types_pb2.CONSTRAINT_OP_IN,
    Op.NOT_IN: types_pb2.CONSTRAINT_OP_NOT_IN,
    Op.EXISTS: types_pb2.CONSTRAINT_OP_EXISTS,
}
_FROM_PB = {v: k for k, v in _TO_PB.items()}


@dataclass(frozen=True)
class Constraint:
    """A requirement on a worker's attributes. A worker without ``key`` fails ``=``,
    ``in`` and ``exists`` and passes ``!=`` and ``not in``."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    @classmethod
    def parse(cls, s: str) -> Constraint:
        """``zone=a``, ``disk!=hdd``, ``gpu.model in (a100,h100)``, ``zone not in (c)``
        or ``gpu.model exists``. The master checks keys and values again."""
        t = s.strip()
        if "!=" in t:
            k, v = t.split("!=", 1)
            c = cls(k.strip(), Op.NE, (v.strip(),))
        elif "=" in t:
            k, v = t.split("=", 1)
            c = cls(k.strip(), Op.EQ, (v.strip(),))
        elif t.endswith(" exists"):
            c = cls(t[: -len(" exists")].strip(), Op.EXISTS)
        else:
            head, paren, rest = t.partition("(")
            words = head.split()
            if not paren or not rest.endswith(")") or words[1:] not in (["in"], ["not", "in"]):
                raise InvalidArgument(f"constraint {s!r} is not one of {FORMS}")
            op = Op.IN if words[1:] == ["in"] else Op.NOT_IN
            c = cls(words[0], op, tuple(v.strip() for v in rest[:-1].split(",")))
        if not c.key or any(not v for v in c.values):
            raise InvalidArgument(f"constraint {s!r} has an empty key or value ({FORMS})")
        return c

    @classmethod
    def of(cls, c: str | Constraint) -> Constraint:
        return c if isinstance(c, Constraint) else cls.parse(c)

    @classmethod
    def from_pb(cls, c: types_pb2.Constraint) -> Constraint:
        return cls(c.key, _FROM_PB.get(c.op, Op.EXISTS), tuple(c.values))

    def to_pb(self) -> types_pb2.Constraint:
        return types_pb2.Constraint(key=self.key, op=_TO_PB[self.op], values=list(self.values))

    def matches(self, attributes: Mapping[str, str]) -> bool:
        v = attributes.get(self.key)
        if self.op is Op.EXISTS:
            return v is not None
        if self.op in (Op.EQ, Op.IN):
            return v is not None and v in self.values
        return v is None or v not in self.values

    def __str__(self) -> str:
        vs = ",".join(self.values)
        if self.op in (Op.EQ, Op.NE):
            return f"{self.key}{self.op.value}{vs}"
        if self.op is Op.EXISTS:
            return f"{self.key} exists"
        return f"{self.key} {self.op.value} ({vs})"


@dataclass(frozen=True)
class Preference:
    """A soft wish, ``KEY=VALUE``: workers that match more preferences go first; the
    others are still used."""

    key: str
    value: str

    @classmethod
    def parse(cls, s: str) -> Preference:
        k, eq, v = s.partition("=")
        if not eq or not k.strip() or not v.strip():
            raise InvalidArgument(f"preference {s!r} is not KEY=VALUE")
        return cls(k.strip(), v.strip())

    @classmethod
    def of(cls, p: str | Preference) -> Preference:
        return p if isinstance(p, Preference) else cls.parse(p)

    def to_pb(self) -> types_pb2.Preference:
        return types_pb2.Preference(key=self.key, value=self.value)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return attributes.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


__all__ = ["Constraint", "Op", "Preference"]
