"""List adapter params: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adapters.list import EntryType, ListAdapter, ListParams
from tests.adapters.support import assert_names_every_problem, bad_params_files

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", bad_params_files(TESTDATA), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    assert_names_every_problem(ListAdapter(), path)


def test_defaults_are_mixers() -> None:
    params = ListAdapter().parse_params({})
    assert params == ListParams()
    assert params.entry_type is EntryType.STRINGS and params.blacklist is False
    assert params.refresh_interval == dt.timedelta(seconds=60) and params.ttl == dt.timedelta(seconds=300)
    assert params.caching_interval == dt.timedelta(seconds=300) and params.caching_use_count == 10000


def test_istio_docs_blacklist_parses() -> None:
    # The shape of Istio 1.4's "Denials and White/Black Listing" task.
    params = ListAdapter().parse_params({
        "overrides": ["v2"], "blacklist": True, "entryType": "STRINGS",
    })
    assert params.overrides == ("v2",) and params.blacklist
    ips = ListAdapter().parse_params({
        "overrides": ["10.57.0.0/16"], "blacklist": False, "entryType": "IP_ADDRESSES",
        "providerUrl": "https://lists.example/ips", "refreshInterval": "30s", "ttl": "2m",
        "cachingInterval": "10s", "cachingUseCount": 100,
    })
    assert ips.provider_path is None
    assert (ips.refresh_interval, ips.ttl) == (dt.timedelta(seconds=30), dt.timedelta(minutes=2))
    assert ListAdapter().parse_params({"providerUrl": "file:///etc/lists/a%20b.txt"}).provider_path == \
        Path("/etc/lists/a b.txt")


def test_param_errors_point_into_the_config_file(tmp_path: Path) -> None:
    from mixer.config import ConfigError, load_config

    path = tmp_path / "list.yaml"
    path.write_text("""\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: paths, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params:
    entryType: REGEX
    overrides: ["^/ok", "(?<=x)y"]
""")
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"{path}:8:25: handler[paths.istio-system].spec.params.overrides[1]: "
                                   "invalid regular expression '(?<=x)y': invalid perl operator: (?<")
