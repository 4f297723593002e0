"""The Presentation 3 rules that IIIF's official validator (its JSON Schema) enforces on what we publish.

Not a copy of the schema: the rules for the properties iconosearch writes (ids, types, required
properties, dimensions, language maps, rights URI forms, services, links), each reported as a readable
problem with its JSON path, so a failing test says what broke where.
"""

from __future__ import annotations

import re
from typing import Any

_LANG_KEY = re.compile(r"^[a-zA-Z-][a-zA-Z-]*$")
_RIGHTS = re.compile(
    r"http://creativecommons\.org/licenses/.*|http://creativecommons\.org/publicdomain/.*|"
    r"http://rightsstatements\.org/vocab/.*"
)
_FORMAT = re.compile(r"^[a-z][a-z]*/.*$")


def problems(doc: Any) -> list[str]:
    """Every rule the document breaks (empty when it conforms), as ``path: what``."""
    out: list[str] = []
    typ = doc.get("type") if isinstance(doc, dict) else None
    if doc.get("@context") != "http://iiif.io/api/presentation/3/context.json" and not (
        isinstance(doc.get("@context"), list)
        and "http://iiif.io/api/presentation/3/context.json" in doc["@context"]
    ):
        out.append("$: @context is not the Presentation 3 context")
    if typ == "Manifest":
        _manifest(doc, "$", out)
    elif typ == "Collection":
        _collection(doc, "$", out)
    else:
        out.append(f"$: type {typ!r} is neither Manifest nor Collection")
    return out


def _id(node: dict[str, Any], path: str, out: list[str]) -> None:
    value = node.get("id")
    if not isinstance(value, str) or not value.startswith("http"):
        out.append(f"{path}.id: {value!r} is not an http(s) URI")


def _lang(value: Any, path: str, out: list[str]) -> None:
    if not isinstance(value, dict) or not value:
        out.append(f"{path}: not a language map")
        return
    for key, texts in value.items():
        if not (_LANG_KEY.match(key) or key == "none"):
            out.append(f"{path}: {key!r} is not a language tag")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            out.append(f"{path}.{key}: values must be a list of strings")


def _common(node: dict[str, Any], path: str, out: list[str]) -> None:
    """Properties any resource may carry, checked where present."""
    for key in ("label", "summary"):
        if key in node:
            _lang(node[key], f"{path}.{key}", out)
    for i, pair in enumerate(node.get("metadata", [])):
        _lang(pair.get("label"), f"{path}.metadata[{i}].label", out)
        _lang(pair.get("value"), f"{path}.metadata[{i}].value", out)
    if "requiredStatement" in node:
        _lang(node["requiredStatement"].get("label"), f"{path}.requiredStatement.label", out)
        _lang(node["requiredStatement"].get("value"), f"{path}.requiredStatement.value", out)
    if "rights" in node and not (isinstance(node["rights"], str) and _RIGHTS.match(node["rights"])):
        out.append(f"{path}.rights: {node['rights']!r} is not an http:// CC or RightsStatements.org URI")
    if "navDate" in node and not re.match(r"^-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d", str(node["navDate"])):
        out.append(f"{path}.navDate: not an xsd:dateTime")
    for key in ("homepage", "partOf", "thumbnail", "seeAlso", "rendering"):
        for i, link in enumerate(node.get(key, [])):
            lpath = f"{path}.{key}[{i}]"
            if not isinstance(link, dict) or "type" not in link:
                out.append(f"{lpath}: a linked resource needs id and type")
                continue
            _id(link, lpath, out)
            if "format" in link and not _FORMAT.match(str(link["format"])):
                out.append(f"{lpath}.format: {link['format']!r} is not a media type")
            if "label" in link:
                _lang(link["label"], f"{lpath}.label", out)
    for i, agent in enumerate(node.get("provider", [])):
        _id(agent, f"{path}.provider[{i}]", out)
        if agent.get("type") != "Agent":
            out.append(f"{path}.provider[{i}].type: must be Agent")
        _common(agent, f"{path}.provider[{i}]", out)


def _dimensions(node: dict[str, Any], path: str, out: list[str], *, required: bool) -> None:
    for key in ("width", "height"):
        value = node.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            out.append(f"{path}.{key}: {value!r} is not a positive integer")


def _services(services: Any, path: str, out: list[str]) -> None:
    for i, svc in enumerate(services or []):
        spath = f"{path}.service[{i}]"
        if "id" in svc or "type" in svc:
            _id(svc, spath, out)
            if not isinstance(svc.get("type"), str):
                out.append(f"{spath}.type: missing")
        elif not (isinstance(svc.get("@id"), str) and isinstance(svc.get("@type"), str)):
            out.append(f"{spath}: a service needs id and type (or v2 @id and @type)")


def _manifest(doc: dict[str, Any], path: str, out: list[str]) -> None:
    _id(doc, path, out)
    if "label" not in doc:
        out.append(f"{path}.label: required on a Manifest")
    _common(doc, path, out)
    items = doc.get("items")
    if not isinstance(items, list):
        out.append(f"{path}.items: required on a Manifest")
        return
    for i, canvas in enumerate(items):
        _canvas(canvas, f"{path}.items[{i}]", out)


def _canvas(canvas: dict[str, Any], path: str, out: list[str]) -> None:
    _id(canvas, path, out)
    if canvas.get("type") != "Canvas":
        out.append(f"{path}.type: must be Canvas")
    _dimensions(canvas, path, out, required=True)
    _common(canvas, path, out)
    for p, page in enumerate(canvas.get("items", [])):
        ppath = f"{path}.items[{p}]"
        _id(page, ppath, out)
        if page.get("type") != "AnnotationPage":
            out.append(f"{ppath}.type: must be AnnotationPage")
        for a, anno in enumerate(page.get("items", [])):
            apath = f"{ppath}.items[{a}]"
            _id(anno, apath, out)
            if anno.get("type") != "Annotation" or "motivation" not in anno or "target" not in anno:
                out.append(f"{apath}: an Annotation needs type, motivation and target")
            body = anno.get("body")
            for b, item in enumerate(body if isinstance(body, list) else [body]):
                bpath = f"{apath}.body" + (f"[{b}]" if isinstance(body, list) else "")
                if not isinstance(item, dict):
                    out.append(f"{bpath}: missing")
                    continue
                _id(item, bpath, out)
                if not isinstance(item.get("type"), str):
                    out.append(f"{bpath}.type: missing")
                _dimensions(item, bpath, out, required=False)
                if "format" in item and not _FORMAT.match(str(item["format"])):
                    out.append(f"{bpath}.format: not a media type")
                _services(item.get("service"), bpath, out)


def _collection(doc: dict[str, Any], path: str, out: list[str]) -> None:
    _id(doc, path, out)
    if "label" not in doc:
        out.append(f"{path}.label: required on a Collection")
    _common(doc, path, out)
    for i, ref in enumerate(doc.get("items", [])):
        rpath = f"{path}.items[{i}]"
        _id(ref, rpath, out)
        if ref.get("type") not in ("Manifest", "Collection"):
            out.append(f"{rpath}.type: must be Manifest or Collection")
        _common(ref, rpath, out)
