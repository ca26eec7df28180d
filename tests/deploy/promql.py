"""Just enough PromQL to list the series an expression selects: metric names and matchers.

Used by the tests of the rules and the dashboard, which check that every name they select is
one the code exports. Strings, ranges, numbers, durations, Grafana's ``$variables``, function
and aggregation names, keywords and grouping clauses (``by (le)``, ``on ()``...) are not
series, and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_]\w*)
  | (?P<number>(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
               (?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@])
    """,
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _GROUPING | {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def accepts(self, value: str) -> bool:
        """Whether a series whose label has ``value`` ("" when absent) passes this matcher."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None  # PromQL regexes are anchored
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]

    def label(self, name: str) -> list[Matcher]:
        return [m for m in self.matchers if m.label == name]


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[position : position + 30]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[1]), token[1:-1])


def _skip_group(tokens: list[tuple[str, str]], i: int, opening: str, closing: str) -> int:
    """The index after the bracket that closes the one at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == opening:
            depth += 1
        elif tokens[j][1] == closing:
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"unbalanced {opening}")


def _matchers(tokens: list[tuple[str, str]], i: int) -> tuple[tuple[Matcher, ...], int]:
    found = []
    i += 1  # "{"
    while tokens[i][1] != "}":
        if tokens[i][1] == ",":
            i += 1
            continue
        (_, label), (_, op), (kind, value) = tokens[i : i + 3]
        if kind != "string":
            raise ValueError(f"matcher {label}{op} takes a string, not {value!r}")
        found.append(Matcher(label, op, _unquote(value)))
        i += 3
    return tuple(found), i + 1


def selectors(expr: str) -> list[Selector]:
    """Every series selector in ``expr``, in order."""
    tokens = _tokens(expr)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and value in _GROUPING and following == "(":
            i = _skip_group(tokens, i + 1, "(", ")")
        elif kind == "ident" and following in ("(", "by", "without"):
            i += 1  # a function, or an aggregation (sum by (le) (...))
        elif kind == "ident" and value.lower() in _KEYWORDS:
            i += 1
        elif kind == "ident":
            matchers: tuple[Matcher, ...] = ()
            i += 1
            if following == "{":
                matchers, i = _matchers(tokens, i)
            found.append(Selector(value, matchers))
        elif value == "{":
            matchers, i = _matchers(tokens, i)
            names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
            found.append(Selector(names[0] if names else "", matchers))
        elif value == "[":
            i = _skip_group(tokens, i, "[", "]")
        else:
            i += 1
    return found


def grafana_query_selectors(query: str) -> list[Selector]:
    """The selectors of a Grafana template variable's Prometheus query: label_values(expr,
    label), query_result(expr), or plain PromQL."""
    match = re.fullmatch(r"\s*(label_values|query_result)\((.*)\)\s*", query, re.DOTALL)
    if match is None:
        return selectors(query)
    inner = match[2]
    if match[1] == "label_values":
        head, _, _label = inner.rpartition(",")
        return selectors(head) if head.strip() else []
    return selectors(inner)
