"""The definition language: positioned YAML/JSON sources, JSON Schemas per kind,
cross-reference checks and the immutable specs the rest of the engine uses."""
