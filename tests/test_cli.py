"""The `mixer` command line: validate and expr, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mixer.config import DEFAULT_CONFIG_DIR

TESTDATA = Path(__file__).parent / "config" / "testdata"


def mixer(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mixer.cli", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_validate_accepts_the_shipped_default_config() -> None:
    result = mixer("validate", str(DEFAULT_CONFIG_DIR))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: ")


def test_validate_prints_every_error_and_exits_1() -> None:
    result = mixer("validate", str(TESTDATA / "unknown_adapter.yaml"), str(TESTDATA / "type_mismatch.yaml"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("unknown_adapter.yaml:6:20:" in line and "promethues" in line for line in lines)
    assert any("type_mismatch.yaml:11:10:" in line and "want BOOL" in line for line in lines)


def test_expr_prints_type_and_json_value() -> None:
    result = mixer("expr", 'response.duration | "250ms"', "--attributes", "{}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"type": "DURATION", "value": "250ms"}
    result = mixer("expr", 'request.headers["x-user"] | "anon"', "--attributes",
                   '{"request.headers": {"x-user": "ann"}}')
    assert json.loads(result.stdout) == {"type": "STRING", "value": "ann"}
    result = mixer("expr", "source.ip", "--attributes", '{"source.ip": "10.1.2.3"}')
    assert json.loads(result.stdout) == {"type": "IP_ADDRESS", "value": "10.1.2.3"}
    result = mixer("expr", "request.time", "--attributes", '{"request.time": "2026-11-26T06:22:34.5Z"}')
    assert json.loads(result.stdout) == {"type": "TIMESTAMP", "value": "2026-11-26T06:22:34.500000Z"}


def test_expr_errors_exit_1_with_a_message() -> None:
    for args, fragment in [
        (["request.size +"], "end of expression"),
        (["request.path + 1"], "+"),
        (["request.size"], "request.size"),  # absent attribute at evaluation
        (["request.size", "--attributes", "{bad"], "not valid JSON"),
        (["request.size", "--attributes", '{"request.size": "x"}'], "request.size"),
    ]:
        result = mixer("expr", *args)
        assert result.returncode == 1, args
        assert fragment in result.stderr, (args, result.stderr)
        assert result.stdout == ""


def test_expr_stream_answers_each_line() -> None:
    lines = [
        {"expression": "response.code >= 500", "attributes": {"response.code": 503}},
        {"expression": "nope(", "attributes": {}},
        {"expression": 'source.labels["app"] | "unknown"', "attributes": {"source.labels": {}}},
        {"expression": 'response.duration | ""', "attributes": {}},
        {"expression": "1" * 5000, "attributes": {}},
        {"expression": "request.time", "attributes": {"request.time": "2020-01-01"}},
        {"expression": "response.duration", "attributes": {"response.duration": "99999999999999h"}},
        {"expression": "response.code + 1", "attributes": {"response.code": 1}},
    ]
    result = mixer("expr", "-", stdin="\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0] == {"type": "BOOL", "value": True}
    assert "error" in out[1]
    assert out[2] == {"type": "STRING", "value": "unknown"}
    assert all("error" in line for line in out[3:7])  # bad literals and values: an error line each
    assert out[7] == {"type": "INT64", "value": 2}  # the stream goes on
    assert "error" in out[8]
    assert len(out) == 9


VOCABULARY = """\
apiVersion: config.istio.io/v1alpha2
kind: attributemanifest
metadata: {name: shop, namespace: istio-system}
spec:
  attributes:
    shop.cart.total: {valueType: DOUBLE}
    shop.customer: {valueType: EMAIL_ADDRESS}
"""


def test_expr_and_validate_take_a_custom_vocabulary_from_config(tmp_path: Path) -> None:
    vocabulary = tmp_path / "vocabulary.yaml"
    vocabulary.write_text(VOCABULARY)
    attributes = '{"shop.cart.total": 99.5, "shop.customer": "\\"ann\\"@shop.example"}'
    result = mixer("expr", "--config", str(vocabulary), "shop.cart.total > 50.0", "--attributes", attributes)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"type": "BOOL", "value": True}
    result = mixer("expr", "--config", str(vocabulary), 'shop.customer == email("ann@shop.example")',
                   "--attributes", attributes)
    assert json.loads(result.stdout) == {"type": "BOOL", "value": True}, result.stderr
    result = mixer("expr", "shop.cart.total > 50.0", "--attributes", "{}")
    assert result.returncode == 1 and "unknown attribute 'shop.cart.total'" in result.stderr
    stream = mixer("expr", "--config", str(vocabulary), "-",
                   stdin=json.dumps({"expression": "shop.cart.total + 1", "attributes": {"shop.cart.total": 1.0}}))
    assert "INT64 and DOUBLE do not mix" in json.loads(stream.stdout)["error"]

    rule = tmp_path / "rule.yaml"
    rule.write_text("""\
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: big-carts, namespace: istio-system}
spec:
  match: shop.cart.total > 100.0
""")
    assert mixer("validate", "--config", str(vocabulary), str(rule)).returncode == 0
    result = mixer("validate", str(rule))
    assert result.returncode == 1 and "unknown attribute 'shop.cart.total'" in result.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(VOCABULARY.replace("DOUBLE", "FLOAT"))
    result = mixer("expr", "--config", str(broken), "1")
    assert result.returncode == 1 and "unknown valueType 'FLOAT'" in result.stderr


def test_validate_counts_rbac_documents() -> None:
    policy = Path(__file__).parent / "adapters" / "rbac" / "testdata" / "policy.yaml"
    result = mixer("validate", str(policy))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "ok: 1 handlers, 1 instances, 1 rules, 5 ServiceRoles, 4 ServiceRoleBindings"
