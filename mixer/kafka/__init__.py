"""Past one machine: Apache Kafka between the front doors and the adapter workers.

``mixer serve --mode frontdoor`` answers checks itself and publishes accepted reports to a topic
(``KafkaPublisher`` behind ``PublishingRuntime``); ``mixer serve --mode worker`` consumes that topic as
a consumer group and dispatches to the handlers, committing offsets only after they accepted each
batch (``KafkaWorker``). Bags travel msgpack-encoded (``encode_bags``/``decode_bags``), keyed by
destination workload.

    publisher = KafkaPublisher(KafkaOptions(bootstrap="127.0.0.1:9092"), runtime.metrics)
    doors = standard_doors(PublishingRuntime(runtime, publisher), door_options)   # front door
    worker = KafkaWorker(runtime, KafkaOptions(bootstrap="127.0.0.1:9092"))         # worker
"""

from __future__ import annotations

from mixer.kafka._clients import stop_producer
from mixer.kafka._codec import FORMAT, FORMAT_HEADER, UndecodableMessage, decode_bags, encode_bags
from mixer.kafka._options import KafkaOptions, Mode
from mixer.kafka._publisher import KafkaPublisher, PublishingRuntime, partition_key
from mixer.kafka._worker import KafkaWorker

__all__ = [
    "FORMAT",
    "FORMAT_HEADER",
    "KafkaOptions",
    "KafkaPublisher",
    "KafkaWorker",
    "Mode",
    "PublishingRuntime",
    "UndecodableMessage",
    "decode_bags",
    "encode_bags",
    "partition_key",
    "stop_producer",
]
