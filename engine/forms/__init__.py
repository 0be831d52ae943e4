"""Form runtime: a FormSpec becomes a JSON Schema, an HTML-form coercer and one
validation path shared by the web pages and the REST API."""

from .coerce import coerce_form_data
from .errors import MESSAGES, FieldError, ValidationFailed, to_json
from .schema import compiled_validator, form_json_schema
from .validate import default_value, validate_submission
from .values import condition_row

__all__ = [
    "MESSAGES",
    "FieldError",
    "ValidationFailed",
    "coerce_form_data",
    "compiled_validator",
    "condition_row",
    "default_value",
    "form_json_schema",
    "to_json",
    "validate_submission",
]
