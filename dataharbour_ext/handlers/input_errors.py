"""Bad input described in plain English, with the user's own field path.

Paths read like the JSON the user sent: `name`, `args[3]`, `conf['spark.a']`, `env['X']`.
Messages never show validator internals (`conf.spark.a.str`, "Input should be a valid ...").
"""

from pydantic import ValidationError

# What a value must be, per pydantic type error; several (a union) are joined with "or".
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def path_text(path: list) -> str:
    """`['conf', 'spark.a']` -> `conf['spark.a']`, `['args', 0]` -> `args[0]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not text:
            text = _printable(part)
        else:
            text += f"[{_printable(repr(part))}]"
    return text


def _printable(text: str) -> str:
    # A lone surrogate cannot be written to a response or a log: show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def find_unencodable_text(data, path: list | None = None) -> tuple[str, str] | None:
    """The first string (key or value) in decoded JSON that cannot be encoded as UTF-8, as
    `(field path, message)`, or None. JSON's `\\ud800` escapes decode to such strings."""
    path = path or []
    if isinstance(data, str):
        return None if _encodable(data) else (path_text(path) or "body", _UNENCODABLE)
    if isinstance(data, list):
        items = enumerate(data)
    elif isinstance(data, dict):
        for key in data:
            if not _encodable(key):
                return path_text(path) or "body", f"the key {_printable(repr(key))} {_UNENCODABLE_KEY}"
        items = data.items()
    else:
        return None
    for key, value in items:
        if problem := find_unencodable_text(value, [*path, key]):
            return problem
    return None


_UNENCODABLE = "contains text that cannot be encoded as UTF-8 (a lone surrogate such as \\ud800)"
_UNENCODABLE_KEY = "cannot be encoded as UTF-8 (a lone surrogate such as \\ud800)"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validation_message(error: ValidationError, data) -> tuple[str, str]:
    """The first problem of a pydantic error as `(field path, message)`."""
    errors = error.errors(include_url=False)
    first_path = _user_path(errors[0]["loc"], data)
    same_field = [e for e in errors if _user_path(e["loc"], data) == first_path]
    return path_text(first_path) or "body", _message(same_field)


def _user_path(loc: tuple, data) -> list:
    """The part of pydantic's location that names places in the user's data; the rest
    (union member tags such as `str`, the `[key]` marker) is pydantic's own bookkeeping."""
    path: list = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            path.append(part)
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            path.append(part)
            data = data[part]
        elif not path and isinstance(part, str) and part != "[key]":
            path.append(part)  # a missing top-level field
            data = None
    return path


def _message(errors: list[dict]) -> str:
    """One message for the errors at one field (several for a union: "a string or a number")."""
    expected = [_EXPECTED.get(e["type"]) for e in errors]
    if len(errors) > 1 and all(expected):
        if "a number" in expected and "an integer" in expected:
            expected.remove("an integer")  # "a number" covers it
        words = list(dict.fromkeys(expected))
        return "must be " + (", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0])
    return _single_message(errors[0])


def _single_message(error: dict) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "value_error":
        return str(ctx.get("error") or error["msg"].removeprefix("Value error, "))
    if kind in ("literal_error", "enum"):
        return f"must be {ctx['expected']}"
    if kind == "string_too_short":
        return "must not be blank" if ctx.get("min_length") == 1 else f"must be at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} items"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
                 "less_than": "less than"}[kind]
        limit = next(iter(ctx.values()))
        return f"must be {words} {limit}"
    return error["msg"].replace("Input should be", "must be")
