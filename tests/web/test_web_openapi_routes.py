"""The API document is the API: every route under /api/v1 of the app's own
url_map, with each method, path parameter, query parameter and enum, is in
/api/v1/openapi.json, and the document has nothing the app does not serve.

Routes and their converters come from Flask; the query parameters a view
reads come from its source (and the helpers it hands ``request.args`` to),
read with ``ast``; enums are checked by asking the API itself. Nothing here
is a copy of the document."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from web_support import bearer

from web.approvals import ACTIONS

API = "/api/v1"
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
_VARIABLE = re.compile(r"<(?:(?P<conv>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
#: Views that hand every query argument on, so no fixed list can describe them:
#: the record list (a filter per form field: checked against the forms below)
#: and the providers' receipt callbacks (the provider's own signature arguments).
PASSES_ALL_ARGS = {"api.list_records", "messages_api.receipts"}

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# ------------------------------------------------------------ the app's side

def _expand(rule: str, forms: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The document paths one Flask rule stands for, with the converter of
    each remaining path variable: ``any(a, b)`` is one literal path per
    choice, and ``<form_id>`` one per published form (the document gives each
    form its typed operations)."""
    match = _VARIABLE.search(rule)
    if match is None:
        yield rule, {}
        return
    conv, name = match["conv"] or "default", match["name"]
    if conv == "any" or name == "form_id":
        choices = [c.strip() for c in match["args"].split(",")] if conv == "any" else forms
        for choice in choices:
            yield from _expand(rule[:match.start()] + choice + rule[match.end():], forms)
        return
    for path, variables in _expand(rule[:match.start()] + "{" + name + "}" + rule[match.end():], forms):
        yield path, {name: conv, **variables}


def _routes(app: Flask) -> dict[tuple[str, str], tuple[str, dict[str, str]]]:
    """(document path, method) → (endpoint, path variable converters) of every API route."""
    forms = sorted(app.extensions["promoflow"].registry.current().forms)
    out = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        for path, variables in _expand(rule.rule[len(API):], forms):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out[(path, method.lower())] = (rule.endpoint, variables)
    return out


def _document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) → the operation, its path item's parameters merged in.
    Path items with servers of their own (``/healthz``) are not under /api/v1."""
    out = {}
    for path, item in doc["paths"].items():
        if "servers" in item:
            continue
        for method, op in item.items():
            if method in HTTP_METHODS:
                params = {(p["name"], p["in"]): p for p in [*item.get("parameters", []), *op.get("parameters", [])]}
                out[(path, method)] = {**op, "parameters": list(params.values())}
    return out


# --------------------------------------------- query arguments a view reads

_ARGS = object()      # marks a name bound to the request's query arguments
WILDCARD = "*"        # the view hands all arguments on (iterates or copies them)


def _function_ast(func: Callable[..., Any]) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef), func
    return node


def _resolve(func: Callable[..., Any], node: ast.FunctionDef, callee: ast.expr) -> Any:
    """The function a call in ``func`` names: a global of its module, a
    function-level ``from … import``, or ``module.attribute``."""
    scope = dict(func.__globals__)
    for imp in ast.walk(node):
        if isinstance(imp, ast.ImportFrom):
            package = func.__module__.rsplit(".", 1)[0]
            module = importlib.import_module(("." * imp.level) + (imp.module or ""), package) if imp.level \
                else importlib.import_module(imp.module or "")
            for alias in imp.names:
                if alias.name != "*":
                    scope[alias.asname or alias.name] = getattr(module, alias.name, None)
    if isinstance(callee, ast.Name):
        return scope.get(callee.id)
    if isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
        base = scope.get(callee.value.id)
        return getattr(base, callee.attr, None) if inspect.ismodule(base) else None
    return None


def args_read(func: Callable[..., Any], bound: dict[str, Any] | None = None,
              seen: set[Any] | None = None) -> set[str]:
    """The query arguments ``func`` reads: ``request.args`` (or a parameter
    bound to it) ``.get("k")``, ``["k"]``, ``"k" in``, ``getlist``; followed
    into the functions it passes the arguments to, and into the web app's
    own helpers it calls (which may read ``request.args`` themselves).
    ``WILDCARD`` in the answer: it iterates or copies them."""
    func = inspect.unwrap(func)
    seen = set() if seen is None else seen
    visit = (func, tuple(sorted((k, repr(v)) for k, v in (bound or {}).items())))
    if visit in seen:
        return set()
    seen.add(visit)
    node = _function_ast(func)
    env: dict[str, Any] = dict(bound or {})

    def is_args(expr: ast.expr) -> bool:
        if isinstance(expr, ast.Name):
            return env.get(expr.id) is _ARGS
        return (isinstance(expr, ast.Attribute) and expr.attr == "args" and isinstance(expr.value, ast.Name)
                and expr.value.id == "request")

    def key_of(expr: ast.expr) -> set[str] | None:
        """The names an expression can hold: a string, a bound parameter, a loop over strings."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.Name) and isinstance(env.get(expr.id), str | frozenset):
            value = env[expr.id]
            return {value} if isinstance(value, str) else set(value)
        return None

    for loop in ast.walk(node):  # for name in ("actor", "action"): / for name, key, x in (("from", …), …):
        if isinstance(loop, ast.For) and isinstance(loop.iter, ast.Tuple | ast.List):
            items = loop.iter.elts
            targets = loop.target.elts if isinstance(loop.target, ast.Tuple) else [loop.target]
            for i, target in enumerate(targets):
                column = [(e.elts[i] if isinstance(e, ast.Tuple) and isinstance(loop.target, ast.Tuple) else e)
                          for e in items]
                if isinstance(target, ast.Name) and all(isinstance(c, ast.Constant) and isinstance(c.value, str)
                                                        for c in column):
                    env[target.id] = frozenset(c.value for c in column if isinstance(c, ast.Constant))

    for assign in ast.walk(node):  # aliases first: args = request.args; args, errors = request.args, []
        if isinstance(assign, ast.Assign):
            for target in assign.targets:
                pairs = (zip(target.elts, assign.value.elts) if isinstance(target, ast.Tuple)
                         and isinstance(assign.value, ast.Tuple) else [(target, assign.value)])
                for name, value in pairs:
                    if isinstance(name, ast.Name) and is_args(value):
                        env[name.id] = _ARGS
    found: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and is_args(n.func.value):
            if n.func.attr in ("get", "getlist", "pop", "__getitem__") and n.args:
                found |= key_of(n.args[0]) or {WILDCARD}
            elif n.func.attr in ("items", "keys", "values", "to_dict", "lists", "copy"):
                found.add(WILDCARD)
        elif isinstance(n, ast.Subscript) and is_args(n.value):
            found |= key_of(n.slice) or {WILDCARD}
        elif isinstance(n, ast.Compare) and any(is_args(c) for c in n.comparators):
            found |= key_of(n.left) or {WILDCARD}
        elif isinstance(n, (ast.For, ast.comprehension)) and is_args(n.iter):
            found.add(WILDCARD)
        elif isinstance(n, ast.Call) and any(is_args(a) for a in [*n.args, *(k.value for k in n.keywords)]):
            callee = _resolve(func, node, n.func)
            if not inspect.isfunction(callee):
                found.add(WILDCARD)  # a class or builtin takes them all (dict(request.args), MultiDict(...))
                continue
            sig = inspect.signature(callee)
            names = list(sig.parameters)
            binding: dict[str, Any] = {p.name: p.default for p in sig.parameters.values()
                                       if isinstance(p.default, str)}
            def bind(expr: ast.expr) -> Any:
                if is_args(expr):
                    return _ARGS
                keys = key_of(expr)
                return None if keys is None else next(iter(keys)) if len(keys) == 1 else frozenset(keys)

            for i, a in enumerate(n.args):
                if i < len(names):
                    binding[names[i]] = bind(a)
            for k in n.keywords:
                if k.arg:
                    binding[k.arg] = bind(k.value)
            found |= args_read(callee, binding, seen)
        elif isinstance(n, ast.Call):
            callee = _resolve(func, node, n.func)
            if inspect.isfunction(callee) and callee.__module__.startswith("web."):
                found |= args_read(callee, None, seen)
    return found


# ------------------------------------------------------------------- tests

def test_every_route_and_method_is_documented_and_nothing_else(app: Flask) -> None:
    routes, documented = _routes(app), _operations(_document(app))
    missing = sorted(set(routes) - set(documented))
    extra = sorted(set(documented) - set(routes))
    assert not missing, f"served but not in the document: {missing}"
    assert not extra, f"in the document but not served: {extra}"


def test_every_task_action_is_a_route_and_an_operation(app: Flask) -> None:
    """The actions the route takes are web.approvals.ACTIONS, the same the document lists."""
    routes, documented = _routes(app), _operations(_document(app))
    served = {p.rsplit("/", 1)[1] for p, m in routes if p.startswith("/tasks/{task_id}/") and p != "/tasks/{task_id}/done"}
    listed = {p.rsplit("/", 1)[1] for p, m in documented if p.startswith("/tasks/{task_id}/")} - {"done"}
    assert served == listed == set(ACTIONS)
    assert {"add_approver", "comment"} <= served


def test_path_parameters_match_the_route_converters(app: Flask) -> None:
    routes, documented = _routes(app), _operations(_document(app))
    for key, (endpoint, variables) in routes.items():
        params = {p["name"]: p for p in documented[key]["parameters"] if p["in"] == "path"}
        assert set(params) == set(variables), (key, endpoint)
        for name, converter in variables.items():
            assert params[name]["required"] is True, (key, name)
            expected = "integer" if converter in ("int", "bigint") else "string"
            assert params[name]["schema"]["type"] == expected, (key, name, converter)


def test_query_parameters_are_the_ones_the_views_read(app: Flask) -> None:
    routes, documented = _routes(app), _operations(_document(app))
    forms = app.extensions["promoflow"].registry.current().forms
    from web.access import RESERVED_ARGS

    passing_all = set()
    for key, (endpoint, _) in sorted(routes.items()):
        read = args_read(app.view_functions[endpoint]) | {"lang"}  # every answer's language (web.i18n)
        listed = {p["name"] for p in documented[key]["parameters"] if p["in"] == "query"}
        if WILDCARD in read:
            passing_all.add(endpoint)
            assert read - {WILDCARD} <= listed, (key, endpoint, read - listed)
            if endpoint == "api.list_records":  # one filter per field a condition can test
                form = forms[key[0].split("/")[2]]
                filters = {f.key for f in form.fields if f.kind is not None and f.key not in RESERVED_ARGS}
                assert filters <= listed, (key, filters - listed)
                assert listed <= filters | read, (key, listed - filters - read)
            continue
        assert read == listed, f"{key[1].upper()} {key[0]} ({endpoint}): reads {sorted(read)}, documents {sorted(listed)}"
    assert passing_all == PASSES_ALL_ARGS


def test_the_scanner_finds_what_a_view_reads(app: Flask) -> None:
    """The scan itself: direct reads, an alias, and reads inside a helper given the arguments."""
    assert args_read(app.view_functions["api.list_tasks"]) == {"status", "form"}
    assert {"where", "sort", "page", "per_page", "mine", "q", WILDCARD} <= args_read(
        app.view_functions["api.list_records"])


def test_every_query_enum_is_what_the_api_accepts(app: Flask, tokens: dict[str, str]) -> None:
    """Each documented enum value of a GET's query parameter is accepted, and
    a value outside the enum is refused with a 400 that names the parameter."""
    client = app.test_client()
    checked = 0
    for (path, method), op in _operations(_document(app)).items():
        if method != "get" or "{" in path:
            continue
        for param in op["parameters"]:
            enum = param.get("schema", {}).get("enum")
            if param["in"] != "query" or not enum:
                continue
            for value in enum:
                answer = client.get(f"{API}{path}", query_string={param["name"]: value},
                                    headers=bearer(tokens["admin"]))
                assert answer.status_code == 200, (path, param["name"], value, answer.text)
            answer = client.get(f"{API}{path}", query_string={param["name"]: "zz-not-listed"},
                                headers=bearer(tokens["admin"]))
            assert answer.status_code == 400, (path, param["name"], answer.text)
            assert param["name"] in answer.get_json()["error"]["message"]
            checked += 1
    assert checked >= 2  # /tasks?status=, /messages?status=
