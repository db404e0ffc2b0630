import json

import pyarrow as pa
import pytest

from nexa.data.schema import SchemaNotFoundError, builtin_schemas, check_json_schema, load_schema, register_schema


def test_builtin_schemas_load_with_arrow_types():
    schemas = builtin_schemas()
    assert set(schemas) >= {"qa", "instruction", "hypothesis"}
    hyp = schemas["hypothesis"]
    assert hyp.exact and hyp.closed
    assert hyp.arrow_schema().field("target_answer").type == pa.struct(
        [("hypothesis", pa.string()), ("methodology", pa.string()), ("risks", pa.string())])
    assert hyp.arrow_schema().field("quality_score").type == pa.float64()
    assert schemas["instruction"].text_fields == ("system", "prompt", "response")


def test_shipped_schemas_are_valid_json_schema():
    """Shipped schemas skip the JSON Schema meta-check at load (start-up); this is where they get it."""
    schemas = builtin_schemas()
    for schema in schemas.values():
        check_json_schema(schema.document, schema.source)
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        check_json_schema({**schemas["qa"].document, "type": 5}, "broken.json")


def test_first_error_names_field_and_reason():
    qa = load_schema("qa")
    assert qa.first_error({"prompt": "p", "answer": "a", "capability": "c"}) is None
    assert qa.first_error({"prompt": "p", "answer": 3, "capability": "c"}) == ("answer", "3 is not of type 'string'")
    assert qa.first_error({"prompt": "p", "answer": "a"})[0] == "capability"


def test_register_and_load_user_schema(lab, tmp_path):
    doc = {"type": "object", "x-nexa": {"name": "pairs", "version": 2}, "required": ["a"],
           "properties": {"a": {"type": "string", "pattern": "^x"}}}
    file = tmp_path / "pairs.json"
    file.write_text(json.dumps(doc))
    schema, target = register_schema(lab.registry_dir, file)
    assert target.name == "pairs.v2.json" and target.exists()
    loaded = load_schema("pairs", lab.registry_dir)
    assert loaded.version == 2 and not loaded.exact  # "pattern" is beyond the column checks
    register_schema(lab.registry_dir, file)  # same file twice: no error
    doc["properties"]["a"]["minLength"] = 3
    file.write_text(json.dumps(doc))
    with pytest.raises(FileExistsError, match="bump x-nexa.version"):
        register_schema(lab.registry_dir, file)


def test_bad_and_unknown_schemas_are_explained(tmp_path):
    with pytest.raises(SchemaNotFoundError, match="known schemas"):
        load_schema("nope")
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}}))
    with pytest.raises(ValueError, match="x-nexa"):
        load_schema(str(file))
