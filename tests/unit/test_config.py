"""load_config: the YAML file, defaults, ${ENV} references, CLAMOR__ overrides and loud errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from services.cli.mesh import MeshConfig
from services.listener.config import ListenerConfig, ReplaySourceSettings
from services.shared.config import load_config
from services.shared.errors import ConfigError
from services.triage.config import TriageConfig, TriageSettings

NO_ENV: dict[str, str] = {}


def write_config(folder: Path, text: str, name: str = "clamor.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the first line of ``path`` that contains ``needle``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in {path}")


def config_error(model: type[MeshConfig] | type[TriageConfig], path: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(model, path, environ=environ)
    return str(info.value)


# --- the file and defaults ----------------------------------------------------------------


def test_file_values_are_loaded(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        nats:
          url: nats://broker.example:4222
        triage:
          batch_size: 7
          threshold: 0.35
        """,
    )
    config = load_config(MeshConfig, path, environ=NO_ENV)
    assert config.nats.url == "nats://broker.example:4222"
    assert config.triage.batch_size == 7
    assert config.triage.threshold == 0.35


def test_fields_missing_from_the_file_take_model_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 7\n")
    config = load_config(MeshConfig, path, environ=NO_ENV)
    assert config.triage.batch_wait_ms == TriageSettings.model_fields["batch_wait_ms"].default
    assert config.nats == MeshConfig().nats


def test_no_file_gives_the_model_defaults_with_paths_under_the_working_directory() -> None:
    expected = MeshConfig.model_validate({}, context={"base_dir": Path.cwd()})
    assert load_config(MeshConfig, None, environ=NO_ENV) == expected


def test_empty_file_gives_the_model_defaults_with_paths_under_its_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, "# nothing set yet\n")
    config = load_config(MeshConfig, path, environ=NO_ENV)
    assert config == MeshConfig.model_validate({}, context={"base_dir": tmp_path.resolve()})
    assert config.router.outbox.path == tmp_path.resolve() / "outbox.jsonl"


def test_service_config_ignores_other_services_sections(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        triage:
          batch_size: 9
        listener:
          sources:
            - {kind: replay, name: sample, path: posts.jsonl}
        """,
    )
    assert load_config(TriageConfig, path, environ=NO_ENV).triage.batch_size == 9


def test_service_config_still_validates_its_own_section(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: -1\n")
    assert "triage.batch_size" in config_error(TriageConfig, path, NO_ENV)


# --- ${ENV} references --------------------------------------------------------------------


def test_env_reference_is_replaced_by_its_value(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  password: ${CLAMOR_TEST_NATS_PASSWORD}\n")
    assert load_config(MeshConfig, path, environ={"CLAMOR_TEST_NATS_PASSWORD": "s3cret"}).nats.password == "s3cret"


def test_env_reference_inside_a_longer_string_is_replaced(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  url: nats://${CLAMOR_TEST_NATS_HOST}:4222\n")
    assert (
        load_config(MeshConfig, path, environ={"CLAMOR_TEST_NATS_HOST": "broker.internal"}).nats.url
        == "nats://broker.internal:4222"
    )


def test_env_reference_default_is_used_when_the_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLAMOR_TEST_UNSET", raising=False)
    path = write_config(tmp_path, "nats:\n  url: ${CLAMOR_TEST_UNSET:-nats://fallback:4222}\n")
    assert load_config(MeshConfig, path, environ=NO_ENV).nats.url == "nats://fallback:4222"


def test_env_reference_value_wins_over_its_default(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  url: ${CLAMOR_TEST_NATS_URL:-nats://fallback:4222}\n")
    assert (
        load_config(MeshConfig, path, environ={"CLAMOR_TEST_NATS_URL": "nats://from-env:4222"}).nats.url
        == "nats://from-env:4222"
    )


def test_env_reference_may_default_to_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAMOR_TEST_UNSET", raising=False)
    path = write_config(tmp_path, "nats:\n  token: 'tok-${CLAMOR_TEST_UNSET:-}'\n")
    assert load_config(MeshConfig, path, environ=NO_ENV).nats.token == "tok-"


def test_env_reference_in_a_list_item_is_replaced(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        listener:
          sources:
            - {kind: replay, name: "${CLAMOR_TEST_SOURCE}", path: posts.jsonl}
        """,
    )
    assert load_config(ListenerConfig, path, environ={"CLAMOR_TEST_SOURCE": "feed"}).listener.sources[0].name == "feed"


def test_missing_env_reference_error_names_the_field_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLAMOR_TEST_UNSET", raising=False)
    path = write_config(tmp_path, "nats:\n  password: ${CLAMOR_TEST_UNSET}\n")
    message = config_error(MeshConfig, path, NO_ENV)
    assert "nats.password" in message
    assert "CLAMOR_TEST_UNSET" in message
    assert str(path) in message


def test_missing_env_reference_error_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAMOR_TEST_UNSET", raising=False)
    path = write_config(tmp_path, "nats:\n  url: nats://127.0.0.1:4222\n  password: ${CLAMOR_TEST_UNSET}\n")
    assert f"{path}:{line_of(path, 'password')}" in config_error(MeshConfig, path, NO_ENV)


def test_env_reference_reads_the_given_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAMOR_TEST_GIVEN", raising=False)
    path = write_config(tmp_path, "nats:\n  password: ${CLAMOR_TEST_GIVEN}\n")
    config = load_config(MeshConfig, path, environ={"CLAMOR_TEST_GIVEN": "given"})
    assert config.nats.password == "given"


# --- CLAMOR__SECTION__FIELD overrides -----------------------------------------------------


def test_env_override_wins_over_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 7\n")
    config = load_config(MeshConfig, path, environ={"CLAMOR__TRIAGE__BATCH_SIZE": "64"})
    assert config.triage.batch_size == 64


def test_env_override_keeps_the_other_fields_of_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 7\n  batch_wait_ms: 900\n")
    config = load_config(MeshConfig, path, environ={"CLAMOR__TRIAGE__BATCH_SIZE": "64"})
    assert config.triage.batch_wait_ms == 900


def test_env_override_applies_without_a_file() -> None:
    config = load_config(MeshConfig, None, environ={"CLAMOR__NATS__URL": "nats://override:4222"})
    assert config.nats.url == "nats://override:4222"


def test_env_override_creates_a_section_missing_from_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  stream_replicas: 3\n")
    config = load_config(MeshConfig, path, environ={"CLAMOR__ROUTER__TEAM": "billing"})
    assert (config.router.team, config.nats.stream_replicas) == ("billing", 3)


def test_env_override_is_parsed_as_yaml(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 7\n")
    config = load_config(MeshConfig, path, environ={"CLAMOR__TRIAGE__GRPC": "{host: 0.0.0.0, port: 6001}"})
    assert (config.triage.grpc.host, config.triage.grpc.port) == ("0.0.0.0", 6001)


def test_empty_env_override_sets_an_empty_string() -> None:
    config = load_config(MeshConfig, None, environ={"CLAMOR__TELEMETRY__OTLP_ENDPOINT": ""})
    assert config.telemetry.otlp_endpoint == ""


def test_variables_without_the_prefix_are_ignored() -> None:
    environ = {"TRIAGE__BATCH_SIZE": "5", "CLAMOR_TRIAGE__BATCH_SIZE": "5", "CLAMOR__": "5"}
    assert load_config(MeshConfig, None, environ=environ) == load_config(MeshConfig, None, environ=NO_ENV)


def test_invalid_env_override_error_names_the_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 7\n")
    message = config_error(MeshConfig, path, {"CLAMOR__TRIAGE__BATCH_SIZE": "0"})
    assert "triage.batch_size (environment variable CLAMOR__TRIAGE__BATCH_SIZE)" in message


def test_unparseable_env_override_error_names_the_variable() -> None:
    message = config_error(MeshConfig, None, {"CLAMOR__NATS__URL": "[not closed"})
    assert "CLAMOR__NATS__URL" in message


def test_env_override_of_an_unknown_field_is_rejected() -> None:
    message = config_error(MeshConfig, None, {"CLAMOR__TRIAGE__BATCH_SISE": "5"})
    assert "triage.batch_sise (environment variable CLAMOR__TRIAGE__BATCH_SISE)" in message


# --- validation errors --------------------------------------------------------------------


def test_validation_error_names_the_dotted_field_and_its_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        nats:
          url: nats://127.0.0.1:4222
        triage:
          threshold: 0.5
          batch_size: lots
        """,
    )
    message = config_error(MeshConfig, path, NO_ENV)
    assert f"triage.batch_size ({path}:{line_of(path, 'batch_size')})" in message


def test_validation_error_in_a_list_item_names_its_index_and_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        listener:
          sources:
            - kind: replay
              name: good
              path: a.jsonl
            - kind: replay
              path: b.jsonl
              name: Not Valid
        """,
    )
    message = config_error(MeshConfig, path, NO_ENV)
    assert f"listener.sources[1].name ({path}:{line_of(path, 'Not Valid')})" in message


def test_validation_error_lists_every_invalid_setting(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  stream_replicas: 9\ntriage:\n  threshold: 2\n")
    message = config_error(MeshConfig, path, NO_ENV)
    assert "2 invalid settings" in message
    assert "nats.stream_replicas" in message
    assert "triage.threshold" in message


def test_missing_required_field_names_the_item_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "listener:\n  sources:\n    - kind: replay\n      name: sample\n")
    message = config_error(MeshConfig, path, NO_ENV)
    assert f"listener.sources[0].path ({path}:{line_of(path, 'kind: replay')})" in message


def test_error_in_a_tagged_channel_names_the_real_field_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, "notifier:\n  channels:\n    - {kind: file, name: out}\n")
    assert "notifier.channels[0].path (" in config_error(MeshConfig, path, NO_ENV)


def test_unknown_key_in_a_section_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 8\n  bacth_wait_ms: 100\n")
    message = config_error(MeshConfig, path, NO_ENV)
    assert f"triage.bacth_wait_ms ({path}:{line_of(path, 'bacth_wait_ms')})" in message


def test_unknown_top_level_section_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats: {}\ntraige:\n  batch_size: 8\n")
    assert f"traige ({path}:{line_of(path, 'traige')})" in config_error(MeshConfig, path, NO_ENV)


def test_config_error_chains_the_validation_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "triage:\n  batch_size: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(MeshConfig, path, environ=NO_ENV)
    assert info.value.__cause__ is not None


# --- paths --------------------------------------------------------------------------------


def test_relative_path_resolves_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write_config(tmp_path / "conf", "telemetry:\n  span_dir: spans\n")
    config = load_config(MeshConfig, path, environ=NO_ENV)
    assert config.telemetry.span_dir == (tmp_path / "conf").resolve() / "spans"


def test_relative_path_in_a_list_item_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "conf", "listener:\n  sources:\n    - {kind: replay, name: s, path: data/posts.jsonl}\n"
    )
    config = load_config(MeshConfig, path, environ=NO_ENV)
    replay = config.listener.sources[0]
    assert isinstance(replay, ReplaySourceSettings)
    assert replay.path == (tmp_path / "conf").resolve() / "data" / "posts.jsonl"


def test_absolute_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "spans"
    path = write_config(tmp_path / "conf", f"telemetry:\n  span_dir: {target}\n")
    assert load_config(MeshConfig, path, environ=NO_ENV).telemetry.span_dir == target


def test_relative_path_without_a_file_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(MeshConfig, None, environ={"CLAMOR__TELEMETRY__SPAN_DIR": "spans"})
    assert config.telemetry.span_dir == tmp_path.resolve() / "spans"


# --- unreadable and malformed files -------------------------------------------------------


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  url: [not closed\n")
    message = config_error(MeshConfig, path, NO_ENV)
    assert str(path) in message
    assert "not valid YAML" in message


def test_top_level_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "- nats\n- triage\n")
    assert "top level must be a mapping" in config_error(MeshConfig, path, NO_ENV)


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    message = config_error(MeshConfig, path, NO_ENV)
    assert f"cannot read config file {path}" in message


def test_directory_given_as_the_file_is_a_config_error(tmp_path: Path) -> None:
    assert f"cannot read config file {tmp_path}" in config_error(MeshConfig, tmp_path, NO_ENV)


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_bytes("# café\nnats: {}\n".encode("latin-1"))
    assert str(path) in config_error(MeshConfig, path, NO_ENV)


def test_digit_only_override_of_a_text_field_stays_text() -> None:
    config = load_config(MeshConfig, None, environ={"CLAMOR__NATS__PASSWORD": "123456"})
    assert config.nats.password == "123456"


# --- nats.url: one server, or every node of a cluster ---------------------------------------


def test_nats_url_may_list_every_node_of_a_cluster(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  url: nats://n1.nats:4222, nats://n2.nats:4222 ,nats://n3.nats:4222\n")
    nats = load_config(MeshConfig, path, environ=NO_ENV).nats
    assert nats.servers == ["nats://n1.nats:4222", "nats://n2.nats:4222", "nats://n3.nats:4222"]
    assert nats.url == "nats://n1.nats:4222,nats://n2.nats:4222,nats://n3.nats:4222"


def test_nats_url_of_one_server_is_a_list_of_one() -> None:
    assert load_config(MeshConfig, None, environ=NO_ENV).nats.servers == ["nats://127.0.0.1:4222"]


def test_nats_url_list_may_come_from_an_env_override() -> None:
    environ = {"CLAMOR__NATS__URL": "nats://a:4222,tls://b:4222"}
    assert load_config(MeshConfig, None, environ=environ).nats.servers == ["nats://a:4222", "tls://b:4222"]


@pytest.mark.parametrize(
    "bad",
    ["http://n2.nats:4222", "n2.nats:4222", "nats://n2.nats:port", "nats://:4222", "nats://n2.nats:4222/path"],
)
def test_nats_url_names_the_one_bad_server_in_the_list(tmp_path: Path, bad: str) -> None:
    path = write_config(tmp_path, f"nats:\n  url: nats://n1.nats:4222,{bad},nats://n3.nats:4222\n")
    message = config_error(MeshConfig, path, NO_ENV)
    [problem] = [line for line in message.splitlines() if "nats.url" in line]
    assert f"nats.url ({path}:2): {bad!r} is not a NATS server URL" in problem
    assert "n1.nats" not in problem
    assert "n3.nats" not in problem


def test_nats_url_with_a_stray_comma_says_so(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  url: nats://n1.nats:4222,,nats://n3.nats:4222\n")
    assert "an empty entry in the server list (a stray comma?)" in config_error(MeshConfig, path, NO_ENV)


def test_nats_url_error_leaves_a_password_out(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  url: nats://ops:s3cret@n1.nats:4222/x\n")
    message = config_error(MeshConfig, path, NO_ENV)
    assert "s3cret" not in message
    assert "'nats://***@n1.nats:4222/x' is not a NATS server URL" in message


def test_nats_servers_shown_in_logs_carry_no_credentials() -> None:
    environ = {"CLAMOR__NATS__URL": "nats://ops:s3cret@n1:4222,nats://n2:4222"}
    assert load_config(MeshConfig, None, environ=environ).nats.shown == "nats://n1:4222,nats://n2:4222"


def test_nats_sync_defaults_to_fsync_on_every_write() -> None:
    assert MeshConfig().nats.sync == "always"


def test_nats_sync_interval_is_read_from_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  sync: interval\n")
    assert load_config(MeshConfig, path, environ=NO_ENV).nats.sync == "interval"


def test_an_unknown_nats_sync_policy_is_refused_by_field_name(tmp_path: Path) -> None:
    path = write_config(tmp_path, "nats:\n  sync: sometimes\n")
    assert "nats.sync" in config_error(MeshConfig, path, NO_ENV)
