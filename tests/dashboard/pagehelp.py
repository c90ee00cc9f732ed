"""Fetch a Dash page's layout the way the browser does: the pages router callback for a path."""

from __future__ import annotations

from typing import Any

ROUTER = ".._pages_content.children..._pages_store.data.."


def page_layout(client: Any, path: str, base_url: str = "http://127.0.0.1:8123/") -> Any:
    body = {
        "output": ROUTER,
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                   {"id": "_pages_location", "property": "search", "value": ""}],
        "changedPropIds": ["_pages_location.pathname"],
        "state": [],
    }
    r = client.post("/_dash-update-component", json=body, base_url=base_url)
    assert r.status_code == 200, r.data[:500]
    return r.json["response"]["_pages_content"]["children"]


def find(node: Any, pred: Any) -> list[Any]:
    """Every component in a layout for which pred(component) holds."""
    out: list[Any] = []
    if isinstance(node, dict):
        if "type" in node and "props" in node and pred(node):
            out.append(node)
        for v in node.values():
            out += find(v, pred)
    elif isinstance(node, list):
        for v in node:
            out += find(v, pred)
    return out


def text_of(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        return " ".join(text_of(v) for k, v in node.items() if k in ("props", "children"))
    if isinstance(node, list):
        return " ".join(text_of(v) for v in node)
    return ""
