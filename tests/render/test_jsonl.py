"""JSON Lines: every line one object, layer lines equal to the JSON report's records, written as they come."""

from __future__ import annotations

import io
import json

from inspector import AnalysisOptions
from inspector.gate import GateRules, evaluate_gate
from inspector.records import FileError, ModelReport
from inspector.render import json as json_render
from inspector.render import jsonl
from tests.render.helpers import fixture_report


def test_stream_matches_the_json_report() -> None:
    report = fixture_report("digits_mlp.safetensors")
    broken = ModelReport(path="gone.onnx", format=None, error=FileError("CorruptFileError", "truncated"))
    options = AnalysisOptions()
    gate = evaluate_gate([report], GateRules(alpha_above=3.0))
    text = "".join(jsonl.lines([report, broken], options, "cpu", gate))
    objects = [json.loads(line) for line in text.splitlines()]
    assert [item["type"] for item in objects] == ["run"] + ["layer"] * len(report.layers) + [
        "summary",
        "error",
        "gate",
    ]
    whole = json_render.document([report, broken], options, "cpu", gate)
    assert objects[0]["settings"] == whole["settings"] and objects[0]["schema_version"] == 1
    for line, record in zip(objects[1:-3], whole["reports"][0]["layers"], strict=True):
        assert {key: value for key, value in line.items() if key not in ("type", "path", "format")} == record
    assert objects[-3]["summary"] == whole["reports"][0]["summary"]
    assert objects[-2]["error"]["message"] == "truncated"
    assert objects[-1]["passed"] is False and objects[-1]["violations"] == whole["gate"]["violations"]


def test_writer_flushes_each_line_as_it_is_written() -> None:
    class Recording(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            Recording.flushes += 1
            super().flush()

    report = fixture_report("digits_mlp.safetensors")
    stream = Recording()
    writer = jsonl.JsonlWriter(stream, AnalysisOptions(), "cpu")
    for record in report.layers[:2]:
        writer.layer(report.path, report.format, record)
    assert stream.getvalue().count("\n") == 3 and Recording.flushes == 3  # a reader has each line at once
    writer.file_done(report)
    writer.finish(evaluate_gate([report], GateRules()))
    assert [json.loads(line)["type"] for line in stream.getvalue().splitlines()] == [
        "run",
        "layer",
        "layer",
        "summary",
        "gate",
    ]
