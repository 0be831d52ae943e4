"""The positioned YAML/JSON reader: values, positions and syntax problems."""

from engine.definitions.source import read_source


def test_scalars_follow_yaml_1_2_core_schema():
    docs, errors = read_source("a.yaml", "on: workdays\nyes: no\nn: 010\nd: 2025-01-01\nf: 1.5\nt: True\nz: ~\nq: '12'\n")
    assert errors == []
    assert docs[0].data == {"on": "workdays", "yes": "no", "n": 10, "d": "2025-01-01", "f": 1.5, "t": True,
                            "z": None, "q": "12"}


def test_positions_of_values_and_keys():
    text = "kind: form\nfields:\n  - {key: a, type: text}\n  - key: b\n    type: date\n"
    docs, errors = read_source("f.yaml", text)
    assert errors == []
    pos = docs[0].positions
    assert pos.locate(("fields", 0, "type")) == (3, 20)
    assert pos.locate(("fields", 1, "type")) == (5, 11)
    assert pos.locate(("fields", 1, "type"), at_key=True) == (5, 5)
    # unknown paths fall back to the nearest ancestor
    assert pos.locate(("fields", 1, "missing", 3)) == (4, 5)


def test_duplicate_key_reported_at_the_second_key():
    docs, errors = read_source("d.yaml", "kind: form\nid: a\nid: b\n")
    assert [str(e) for e in errors] == ["d.yaml:3:1: duplicate key `id` (first at line 2)"]
    assert docs[0].data["id"] == "a"


def test_tab_indentation_points_at_the_tab():
    _, errors = read_source("t.yaml", "kind: form\nfields:\n\t- key: a\n")
    assert [str(e) for e in errors] == ["t.yaml:3:1: tab character; YAML is indented with spaces, not tabs"]


def test_syntax_error_has_line_and_column():
    _, errors = read_source("s.yaml", "kind: form\noptions: [a, b\nid: x\n")
    assert len(errors) == 1
    assert errors[0].line == 3 and errors[0].col == 3
    assert "started at line 2" in errors[0].message


def test_several_documents_and_lists_of_definitions():
    text = "kind: role\nid: a\n---\n- {kind: role, id: b}\n- {kind: role, id: c}\n---\n"
    docs, errors = read_source("m.yaml", text)
    assert errors == []
    assert [d.data["id"] for d in docs] == ["a", "b", "c"]
    assert docs[2].positions.locate(("id",)) == (5, 20)


def test_non_mapping_document_is_an_error():
    _, errors = read_source("x.yaml", "- 1\n- 2\n")
    assert [str(e) for e in errors] == [
        "x.yaml:1:3: each definition must be a mapping with `kind` and `id`",
        "x.yaml:2:3: each definition must be a mapping with `kind` and `id`",
    ]


def test_json_with_tabs_keeps_columns_and_reports_json_errors():
    docs, errors = read_source("a.json", '{\n\t"kind": "role",\n\t"id": "a"\n}\n')
    assert errors == [] and docs[0].positions.locate(("id",)) == (3, 8)
    _, errors = read_source("b.json", '{\n  "kind": "role"\n  "id": "a"\n}\n')
    assert [str(e) for e in errors] == ["b.json:3:3: JSON syntax error: Expecting ',' delimiter"]


def test_merge_keys_and_custom_tags_are_refused():
    _, errors = read_source("m.yaml", "base: &b {a: 1}\nkind: role\n<<: *b\nx: !!python/object:os.system ls\n")
    messages = [str(e) for e in errors]
    assert "m.yaml:3:1: merge keys (`<<`) are not supported; repeat the keys or use include" in messages
    assert any(m.startswith("m.yaml:4:4: unsupported tag") for m in messages)


def test_block_scalars_are_marked():
    docs, _ = read_source("b.yaml", "body: |\n  line one\n  line two\nsubject: plain\n")
    assert ("body",) in docs[0].positions.blocks and ("subject",) not in docs[0].positions.blocks
