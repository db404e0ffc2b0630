import json

import pytest

from nexa.niwt.registry import RegistryError, TeacherRegistry, build_registry, load_registry, parse_parameters

HEADER = "ModelName,Parameters,Category,BestFeature,Benchmark,Metric,RetainFraction\n"


def test_parameters_parse_with_suffixes():
    assert parse_parameters("7B") == 7_000_000_000
    assert parse_parameters("0.85M") == 850_000
    assert parse_parameters("1234") == 1234
    with pytest.raises(ValueError, match="Parameters"):
        parse_parameters("seven")


def test_registry_from_csv_validates_and_quarantines_bad_rows(tmp_path):
    csv = tmp_path / "ModelName-Parameters-Category-BestFeature.csv"
    csv.write_text(HEADER + "t1,7B,text,reasoning;science,,,\n"
                            "t2,oops,text,reasoning,,,\n"
                            "t3,1B,text,telepathy,,,\n"
                            "t4,1B,text,telepathy,psi-bench,accuracy,0.9\n")
    registry, quarantined = build_registry(csv, tmp_path / "teacher_registry.json")
    assert [t.name for t in registry.teachers] == ["t1", "t4"]
    assert [q["line"] for q in quarantined] == [3, 4]
    assert "Parameters" in quarantined[0]["reason"] and "no default benchmark" in quarantined[1]["reason"]
    assert (tmp_path / "teacher_registry.quarantine.jsonl").read_text().count("\n") == 2
    loaded = load_registry(tmp_path / "teacher_registry.json")
    t1 = loaded.teacher("t1")
    assert [c.name for c in t1.capabilities] == ["reasoning", "science"]
    assert all(c.retain_fraction == 0.97 for c in t1.capabilities)
    assert loaded.teacher("t4").capabilities[0].model_dump() == {"name": "telepathy", "benchmark": "psi-bench",
                                                                  "metric": "accuracy", "retain_fraction": 0.9}


def test_missing_columns_and_invalid_registry_are_clear_errors(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("ModelName,Parameters\nx,1B\n")
    with pytest.raises(RegistryError, match="missing columns"):
        build_registry(csv, tmp_path / "r.json")
    (tmp_path / "r.json").write_text(json.dumps({"schema_version": 1, "source": "x", "teachers": [{"name": "a"}]}))
    with pytest.raises(RegistryError, match="not a valid teacher registry"):
        load_registry(tmp_path / "r.json")


def test_shipped_registry_and_csv_agree(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    shipped = load_registry(root / "configs" / "teacher_registry.json")
    assert isinstance(shipped, TeacherRegistry) and shipped.schema_version == 1
    rebuilt, quarantined = build_registry(root / "configs" / "ModelName-Parameters-Category-BestFeature.csv",
                                          tmp_path / "teacher_registry.json")
    assert quarantined == [] and rebuilt == shipped
