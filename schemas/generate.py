"""Generate the msgspec payload types schemas/v16.py and schemas/v201.py from the OCPP schemas.

Run ``python schemas/generate.py`` (or ``python -m chargeledger.schemas.generate``) after
changing a schema under ``schemas/json/`` or this script; ``tests/test_schemas.py`` fails when
the committed modules differ from what this script writes. It imports nothing of ChargeLedger,
so it still runs when a generated module is broken.

Mapping (JSON schema -> msgspec):

* object -> a ``msgspec.Struct`` (``kw_only``, ``omit_defaults``, and ``forbid_unknown_fields``
  when ``additionalProperties`` is false). Attributes are snake_case; the wire name is kept
  exactly with ``msgspec.field(name=...)``. Optional properties default to ``None`` and are
  left out on encode. Schema ``default`` values are not applied: an absent field stays
  ``None``, so a typed payload says what was sent. Caveat: an explicit JSON ``null`` for an
  optional property is accepted as absent, although OCPP forbids sending it.
* Objects that allow additional properties (2.0.1 ``CustomDataType``) silently drop unknown
  members on decode: read vendor extensions from the raw payload.
* string -> ``str`` (``max_length`` from ``maxLength``); ``format`` (date-time, uri) is not
  checked, stations send odd timestamps and the frame log keeps the text anyway.
* enum -> ``Literal[...]``; enum ``definitions`` become named aliases.
* integer -> ``int`` (``ge``/``le`` from ``minimum``/``maximum``).
* number -> ``float``, always bounded to the finite range: JSON has no NaN or infinity, and a
  NaN computed on our side must be refused rather than encoded as ``null``. ``multipleOf``
  (1.6 charging limits, 0.1) is ignored: with binary floats it would refuse valid decimals
  such as 0.3.
* no ``type`` (2.0.1 DataTransfer ``data``) -> ``Any``: any JSON value.
* array -> ``list[...]`` (``min_length``/``max_length`` from ``minItems``/``maxItems``);
  ``additionalItems`` means nothing next to a single ``items`` schema and is ignored.

Names: ``<Action>Request`` / ``<Action>Response`` for the payloads. A ``definitions`` entry keeps
its name (``IdTokenType``) and is emitted once when every file defines it alike; when files
disagree, the variant most files use keeps the name and each other variant is prefixed with
the first payload using it (``AuthorizeRequestIdTokenType``). Inline nested objects (1.6) are
named by their path (``MeterValuesRequestMeterValue``); identical ones are emitted once, under
the smallest of their path names. Any schema keyword this script does not know stops it, so a
constraint is never dropped silently.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["VERSIONS", "SchemaError", "attribute", "load", "main", "render", "render_schemas"]

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = HERE / "json"

VERSIONS = {"v16": "OCPP 1.6J", "v201": "OCPP 2.0.1"}
"""Generated module name -> the protocol its types describe."""

# Keywords that only document (or that the mapping above deliberately ignores) are listed
# alongside the ones that are mapped; anything else is an error.
_KEYWORDS = frozenset(
    {
        "$id",
        "$ref",
        "$schema",
        "additionalItems",
        "additionalProperties",
        "comment",
        "default",
        "definitions",
        "description",
        "enum",
        "format",
        "id",
        "items",
        "javaType",
        "maxItems",
        "maxLength",
        "maximum",
        "minItems",
        "minimum",
        "multipleOf",
        "properties",
        "required",
        "title",
        "type",
    }
)
_DEFINITIONS = "#/definitions/"
_KINDS = ("Request", "Response")


class SchemaError(Exception):
    """A schema uses something the mapping does not cover, or two types would share a name."""


@dataclass(frozen=True)
class Scalar:
    """``str``, ``int``, ``float``, ``bool`` or ``Any``, with its ``msgspec.Meta`` constraints."""

    type: str
    meta: tuple[tuple[str, int | float], ...] = ()


@dataclass(frozen=True)
class Enum:
    """A string enum."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Array:
    """A list of ``item`` with its length constraints."""

    item: Shape
    meta: tuple[tuple[str, int | float], ...] = ()


@dataclass(frozen=True)
class Prop:
    """One property of an object: its wire name, whether required, its shape."""

    wire: str
    required: bool
    shape: Shape


@dataclass(frozen=True)
class Object:
    """An object's properties (in schema order) and whether unknown members are refused."""

    props: tuple[Prop, ...]
    forbid: bool


@dataclass(frozen=True)
class Named:
    """An object or enum emitted as a type of its own.

    ``definition`` is the ``definitions`` key it came from ("" for an inline object). Equality
    ignores ``hint`` (its path name), so identical inline objects compare equal.
    """

    definition: str
    shape: Object | Enum
    hint: str = field(compare=False)


Shape = Scalar | Enum | Array | Named


def _meta(**constraints: int | float | None) -> tuple[tuple[str, int | float], ...]:
    return tuple((key, value) for key, value in constraints.items() if value is not None)


def _integer(node: Mapping[str, Any], bound: str) -> int | None:
    """An integer's bound, which 2.0.1 writes as a float (``"minimum": 0.0``)."""
    value = node.get(bound)
    if value is None:
        return None
    if value != int(value):
        raise SchemaError(f"integer {bound} {value!r} is not a whole number")
    return int(value)


def _pascal(wire: str) -> str:
    return wire[:1].upper() + wire[1:]


def attribute(wire: str) -> str:
    """The snake_case attribute name for the wire name ``wire`` (``responderURL`` ->
    ``responder_url``, ``fullSoC`` -> ``full_soc``)."""
    # "SoC" (state of charge) is one word; the generic rule would make it "so_c".
    words = wire.replace("SoC", "Soc")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", words).lower()
    return f"{snake}_" if keyword.iskeyword(snake) else snake


class _Reader:
    """Reads the shapes of one schema file, resolving its ``definitions``."""

    def __init__(self, schema: Mapping[str, Any], root: str) -> None:
        self.definitions: Mapping[str, Any] = schema.get("definitions", {})
        self.root = root
        self.expanding: list[str] = []

    def shape(self, node: Mapping[str, Any], hint: str) -> Shape:
        unknown = node.keys() - _KEYWORDS
        if unknown:
            raise SchemaError(f"{hint}: unsupported schema keywords {sorted(unknown)}")
        if "$ref" in node:
            return self.ref(node["$ref"])
        kind = node.get("type")
        if "enum" in node:
            if kind != "string":
                raise SchemaError(f"{hint}: enum of type {kind!r}")
            return Enum(tuple(node["enum"]))
        if kind == "string":
            return Scalar("str", _meta(max_length=node.get("maxLength")))
        if kind == "integer":
            return Scalar("int", _meta(ge=_integer(node, "minimum"), le=_integer(node, "maximum")))
        if kind == "number":
            low = float(node.get("minimum", -sys.float_info.max))
            high = float(node.get("maximum", sys.float_info.max))
            return Scalar("float", _meta(ge=low, le=high))
        if kind == "boolean":
            return Scalar("bool")
        if kind is None:
            return Scalar("Any")
        if kind == "array":
            item = self.shape(node["items"], hint)
            return Array(
                item, _meta(min_length=node.get("minItems"), max_length=node.get("maxItems"))
            )
        if kind == "object":
            return Named("", self.object(node, hint), hint)
        raise SchemaError(f"{hint}: unsupported type {kind!r}")

    def object(self, node: Mapping[str, Any], hint: str) -> Object:
        """The object ``node``; nested inline objects are named ``hint`` + property."""
        unknown = node.keys() - _KEYWORDS
        if unknown:
            raise SchemaError(f"{hint}: unsupported schema keywords {sorted(unknown)}")
        properties: Mapping[str, Any] = node.get("properties", {})
        required = set(node.get("required", ()))
        if not required <= properties.keys():
            raise SchemaError(
                f"{hint}: required but undefined {sorted(required - properties.keys())}"
            )
        props = tuple(
            Prop(wire, wire in required, self.shape(sub, hint + _pascal(wire)))
            for wire, sub in properties.items()
        )
        return Object(props, forbid=node.get("additionalProperties", True) is False)

    def ref(self, ref: str) -> Shape:
        name = ref.removeprefix(_DEFINITIONS)
        if name == ref or name not in self.definitions:
            raise SchemaError(f"{self.root}: unresolvable $ref {ref!r}")
        if name in self.expanding:
            raise SchemaError(f"{self.root}: recursive definition {name!r}")
        self.expanding.append(name)
        shape = self.shape(self.definitions[name], name)
        self.expanding.pop()
        if isinstance(shape, Named):
            return Named(name, shape.shape, name)
        if isinstance(shape, Enum):
            return Named(name, shape, name)
        # A definition of a plain scalar or list is used inline: it needs no name.
        return shape


def load(version: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The schemas of ``version`` ("v16" or "v201"), keyed by (action, "Request"/"Response").

    1.6 names a request file ``<Action>.json``, 2.0.1 ``<Action>Request.json``.
    """
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((SCHEMA_DIR / version).glob("*.json")):
        stem = path.stem
        if stem.endswith("Response"):
            key = (stem.removesuffix("Response"), "Response")
        else:
            key = (stem.removesuffix("Request"), "Request")
        schemas[key] = json.loads(path.read_text(encoding="utf-8"))
    return schemas


def _walk(
    shape: Shape, root: str, seen: dict[Named, list[str]], hints: dict[Named, set[str]]
) -> None:
    """Record every named type under ``shape``, with the payloads using it in visiting order."""
    if isinstance(shape, Array):
        _walk(shape.item, root, seen, hints)
    elif isinstance(shape, Named):
        seen.setdefault(shape, []).append(root)
        hints.setdefault(shape, set()).add(shape.hint)
        if isinstance(shape.shape, Object):
            for prop in shape.shape.props:
                _walk(prop.shape, root, seen, hints)


def _names(roots: Mapping[str, Object]) -> dict[Named, str]:
    """The emitted name of every named type reachable from ``roots`` (see the module doc)."""
    seen: dict[Named, list[str]] = {}
    hints: dict[Named, set[str]] = {}
    for root in sorted(roots):
        for prop in roots[root].props:
            _walk(prop.shape, root, seen, hints)
    names: dict[Named, str] = {}
    variants: dict[str, list[Named]] = {}
    for named in seen:
        if named.definition:
            variants.setdefault(named.definition, []).append(named)
        else:
            names[named] = min(hints[named])
    for definition, found in variants.items():
        # max() keeps the first of equals: on a tie the variant seen first keeps the name.
        keeper = max(found, key=lambda named: len(set(seen[named])))
        for named in found:
            names[named] = definition if named is keeper else seen[named][0] + definition
    taken = list(roots) + list(names.values())
    clashes = sorted({name for name in taken if taken.count(name) > 1})
    if clashes:
        raise SchemaError(f"type names used twice: {clashes}")
    return names


def _annotated(base: str, meta: tuple[tuple[str, int | float], ...]) -> str:
    if not meta:
        return base
    args = ", ".join(f"{key}={value!r}" for key, value in meta)
    return f"Annotated[{base}, msgspec.Meta({args})]"


def _annotation(shape: Shape, names: Mapping[Named, str]) -> str:
    if isinstance(shape, Named):
        return names[shape]
    if isinstance(shape, Enum):
        return _literal(shape)
    if isinstance(shape, Array):
        return _annotated(f"list[{_annotation(shape.item, names)}]", shape.meta)
    return _annotated(shape.type, shape.meta)


def _literal(enum: Enum) -> str:
    # JSON string escapes are valid Python string escapes.
    return f"Literal[{', '.join(json.dumps(value) for value in enum.values)}]"


def _struct(name: str, obj: Object, names: Mapping[Named, str]) -> str:
    options = "kw_only=True, omit_defaults=True"
    if obj.forbid:
        options += ", forbid_unknown_fields=True"
    lines = [f"class {name}(msgspec.Struct, {options}):"]
    attributes = [attribute(prop.wire) for prop in obj.props]
    if len(set(attributes)) != len(attributes):
        raise SchemaError(f"{name}: two properties map to one attribute name")
    for attr, prop in zip(attributes, obj.props, strict=True):
        annotation = _annotation(prop.shape, names)
        renamed = f"name={json.dumps(prop.wire)}" if attr != prop.wire else ""
        if prop.required:
            line = f"    {attr}: {annotation}"
            if renamed:
                line += f" = msgspec.field({renamed})"
        else:
            default = f"msgspec.field(default=None, {renamed})" if renamed else "None"
            line = f"    {attr}: {annotation} | None = {default}"
        lines.append(line)
    if not obj.props:
        lines.append("    pass")
    return "\n".join(lines)


def render_schemas(
    title: str, source: str, schemas: Mapping[tuple[str, str], Mapping[str, Any]]
) -> str:
    """The module text for ``schemas`` (keyed by (action, "Request"/"Response")).

    ``title`` names the protocol and ``source`` the schema directory, for the module docstring.
    Raises ``SchemaError`` when an action lacks its request or response, or on anything the
    mapping does not cover.
    """
    actions = sorted({action for action, _ in schemas})
    missing = [f"{a}{k}" for a in actions for k in _KINDS if (a, k) not in schemas]
    if missing:
        raise SchemaError(f"payloads without a schema: {missing}")
    roots: dict[str, Object] = {}
    for (action, kind), schema in schemas.items():
        root = f"{action}{kind}"
        if schema.get("type") != "object":
            raise SchemaError(f"{root}: the payload is not an object")
        roots[root] = _Reader(schema, root).object(schema, root)
    aliases: dict[str, Enum] = {}
    structs: dict[str, Object] = dict(roots)
    names = _names(roots)
    for named, name in names.items():
        if isinstance(named.shape, Enum):
            aliases[name] = named.shape
        else:
            structs[name] = named.shape
    exported = [*sorted([*aliases, *structs]), "REQUESTS", "RESPONSES"]
    out = [
        f'"""{title} payload types, generated by schemas/generate.py from {source}: do not edit.',
        "",
        "Regenerate with ``python schemas/generate.py``; the mapping is described in that script.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Annotated, Any, Literal",
        "",
        "import msgspec",
        "",
        "__all__ = [",
        *(f'    "{name}",' for name in exported),
        "]",
        "",
    ]
    out += [f"{name} = {_literal(aliases[name])}" for name in sorted(aliases)]
    for name in sorted(structs):
        out += ["", "", _struct(name, structs[name], names)]
    for kind, table in zip(_KINDS, ("REQUESTS", "RESPONSES"), strict=True):
        out += ["", "", f"{table}: dict[str, type[msgspec.Struct]] = {{"]
        out += [f'    "{action}": {action}{kind},' for action in actions]
        out.append("}")
    return "\n".join(out) + "\n"


def render(version: str) -> str:
    """The module text of ``schemas/<version>.py`` from the committed JSON schemas."""
    return render_schemas(VERSIONS[version], f"schemas/json/{version}/", load(version))


def main() -> None:
    """Write ``schemas/v16.py`` and ``schemas/v201.py``."""
    for version in VERSIONS:
        target = HERE / f"{version}.py"
        target.write_text(render(version), encoding="utf-8", newline="\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
