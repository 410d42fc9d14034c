"""``mixer serve --mode``: the flag picks local, front-door or worker mode; a Kafka that cannot be
reached at start-up is a clear error, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mixer.cli import build_parser
from mixer.kafka import KafkaOptions, Mode
from mixer.processes import free_port


def test_local_is_the_default_and_the_kafka_flags_have_the_documented_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    defaults = KafkaOptions()
    assert Mode(args.mode) is Mode.LOCAL
    assert (args.kafka_bootstrap, args.kafka_topic, args.kafka_dead_letter_topic, args.kafka_group) == (
        defaults.bootstrap, defaults.topic, defaults.dead_letter_topic, defaults.group)


@pytest.mark.parametrize("mode", ["frontdoor", "worker"])
def test_an_unreachable_kafka_fails_start_up_with_a_message(mode: str, tmp_path: object) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    config = "apiVersion: config.istio.io/v1alpha2\nkind: handler\nmetadata: {name: n}\nspec: {compiledAdapter: noop}\n"
    path = f"{tmp_path}/config.yaml"
    with open(path, "w") as file:
        file.write(config)
    result = subprocess.run(
        [sys.executable, "-m", "mixer.cli", "serve", "--config", path, "--port", str(free_port()), "--no-grpc",
         "--mode", mode, "--kafka-bootstrap", bootstrap, "--log-level", "CRITICAL"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert f"mixer: cannot serve: cannot reach Kafka at {bootstrap}" in result.stderr
    assert "Traceback" not in result.stderr
