"""The local runner's extension point (`local.extras`): start, banner, stop in reverse."""

from __future__ import annotations

from pathlib import Path

import pytest

from local import LocalApi
from local.extras import ENV_VAR, ExtraContext, selected_extras, start_extras, stop_extras

EXTRA = """\
EVENTS = []


def start(ctx):
    EVENTS.append(("start", "{name}", ctx.api.url))
    ctx.banner.append("{name} on http://127.0.0.1:4566")
    if "{name}".endswith("bad"):
        raise RuntimeError("cannot start")
    return lambda: EVENTS.append(("stop", "{name}"))
"""

TEMPLATE = """\
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn
      Handler: app.handler
      Runtime: python3.12
      Events:
        Get: {Type: Api, Properties: {Path: /v1/health, Method: GET}}
"""


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalApi:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return {'statusCode': 200}\n")
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for name in ("extra_one", "extra_two", "extra_bad"):
        (tmp_path / f"{name}.py").write_text(EXTRA.replace("{name}", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    return LocalApi(tmp_path / "template.yaml", port=0, eager=False)


def test_extras_start_in_order_add_banner_lines_and_stop_in_reverse(api: LocalApi) -> None:
    import extra_one

    ctx = ExtraContext(api=api)
    started = start_extras(ctx, ["extra_one", "extra_two"])
    assert [name for name, _ in started] == ["extra_one", "extra_two"]
    assert ctx.banner == ["extra_one on http://127.0.0.1:4566", "extra_two on http://127.0.0.1:4566"]
    stop_extras(started)
    assert extra_one.EVENTS[-1] == ("stop", "extra_one")
    import extra_two

    assert extra_two.EVENTS == [("start", "extra_two", api.url), ("stop", "extra_two")]


def test_a_failing_extra_stops_those_already_started(api: LocalApi) -> None:
    import extra_one

    extra_one.EVENTS.clear()
    with pytest.raises(RuntimeError, match="cannot start"):
        start_extras(ExtraContext(api=api), ["extra_one", "extra_bad"])
    assert extra_one.EVENTS == [("start", "extra_one", api.url), ("stop", "extra_one")]


def test_env_var_selects_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert selected_extras(("local.s3",)) == ("local.s3",)
    monkeypatch.setenv(ENV_VAR, "none")
    assert selected_extras(("local.s3",)) == ()
    monkeypatch.setenv(ENV_VAR, " a.b , c ")
    assert selected_extras(("local.s3",)) == ("a.b", "c")
