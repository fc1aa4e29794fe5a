"""The base of every config section: frozen, unknown keys refused, secrets readable from ``<name>_file``."""

from __future__ import annotations

from typing import Any, ClassVar, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.config import JsonDict

from broker.config.fields import secret_file_keys

SECRET: JsonDict = {"secret": True}  # a field's ``json_schema_extra``: it may be given as ``<name>_file``


class ConfigModel(BaseModel):
    """A config section: frozen, and every key not in the schema is an error (typos never pass silently)."""

    # defer_build: the validators are built when first used (loading builds BrokerConfig's, nested ones
    # inline), not at import; this keeps the gateway's start-up within a few percent of the old loader's.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    secret_fields: ClassVar[tuple[str, ...]] = ()
    secret_lists: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        secrets = [name for name, info in cls.model_fields.items() if info.json_schema_extra == SECRET]
        cls.secret_fields = tuple(secrets)
        cls.secret_lists = frozenset(n for n in secrets if get_origin(cls.model_fields[n].annotation) is list)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """``<name>_file`` of a secret field: its value is read from that file (see ``fields.SecretFile``)."""
        if not cls.secret_fields:
            return data
        return secret_file_keys(data, cls.secret_fields, cls.secret_lists)
