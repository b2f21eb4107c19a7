"""The one exception tree: every class Clamor defines roots in ClamorError, and boundaries translate into it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import services
from services.shared.errors import (
    ClamorError,
    ConfigError,
    ExceptionMapping,
    PermanentError,
    TransientError,
    map_exceptions,
)


def defined_exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module_info in pkgutil.walk_packages(services.__path__, "services."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        found += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
        ]
    return found


def test_every_exception_class_in_services_roots_in_clamor_error() -> None:
    classes = defined_exception_classes()
    assert len(classes) > 30
    assert [f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, ClamorError)] == []


def test_no_subclass_of_transient_error_keeps_its_own_retry_after() -> None:
    copies = [
        c.__name__ for c in defined_exception_classes() if issubclass(c, TransientError) and "__init__" in vars(c)
    ]
    assert copies == ["TransientError"]


def test_a_mapped_library_error_becomes_the_clamor_class_and_keeps_its_cause() -> None:
    cause = ConnectionResetError("peer went away")
    with pytest.raises(TransientError) as raised, map_exceptions({OSError: TransientError}, "cannot save x"):
        raise cause
    assert str(raised.value) == "cannot save x: peer went away"
    assert raised.value.__cause__ is cause
    assert raised.value.retry_after_s is None


def test_the_most_specific_mapping_wins() -> None:
    mapping: ExceptionMapping = {OSError: TransientError, FileNotFoundError: ConfigError}
    with pytest.raises(ConfigError), map_exceptions(mapping, "cannot read rules"):
        raise FileNotFoundError("rules.yaml")
    with pytest.raises(TransientError), map_exceptions(mapping, "cannot read rules"):
        raise PermissionError("rules.yaml")


def test_an_error_with_no_message_is_named_by_its_class() -> None:
    with (
        pytest.raises(TransientError, match="publish failed: TimeoutError"),
        map_exceptions({TimeoutError: TransientError}, "publish failed"),
    ):
        raise TimeoutError


def test_errors_already_in_the_tree_and_unmapped_ones_pass_through() -> None:
    with pytest.raises(PermanentError, match=r"^poison$"), map_exceptions({Exception: TransientError}, "handle"):
        raise PermanentError("poison")
    with pytest.raises(KeyError), map_exceptions({OSError: TransientError}, "handle"):
        raise KeyError("a bug, not an outage")
