"""The one exception hierarchy of parquedb-ibis.

Every error we raise on purpose derives from :class:`ParqueDBError`. Input
errors also derive from :class:`ValueError`, storage errors from
:class:`OSError`, so callers that only know the builtin kinds still work.

Each class builds its message from structured arguments, in the shape
``<where>: <what went wrong>[; <how to fix>]``, and keeps those arguments as
attributes so tests and callers never have to parse prose. Only this module
defines exception classes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest known word, or ``""``."""
    hint = difflib.get_close_matches(word, list(known), n=1, cutoff=0.5)
    return f"; did you mean {hint[0]!r}?" if hint else ""


class ParqueDBError(Exception):
    """Root: ``except ParqueDBError`` catches everything parquedb-ibis raises on purpose."""

    code = "PARQUEDB_ERROR"


# -- configuration -----------------------------------------------------------------


class ConfigurationError(ParqueDBError, ValueError):
    """A setting or URL is missing or malformed (bad scheme, no credentials, no account id)."""

    code = "CONFIGURATION"


# -- filters -----------------------------------------------------------------------


class FilterError(ParqueDBError, ValueError):
    """A filter document is malformed; ``.path`` says where."""

    code = "INVALID_FILTER"

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"filter at {path!r}: {problem}")


class UnknownOperatorError(FilterError):
    """A filter uses an operator we do not know; the message suggests the nearest one."""

    def __init__(self, path: str, operator: str, known: Iterable[str]) -> None:
        self.operator = operator
        super().__init__(path, f"unknown operator {operator!r}{did_you_mean(operator, known)}")


class UnsupportedOperatorError(FilterError):
    """A filter uses an operator that exists in ParqueDB but that we cannot evaluate in SQL."""

    def __init__(self, path: str, operator: str, reason: str) -> None:
        self.operator = operator
        super().__init__(path, f"operator {operator!r} is not supported: {reason}")


class FindOptionError(ParqueDBError, ValueError):
    """A find option (sort, limit, skip, cursor, project) is malformed; ``.option`` says which."""

    code = "INVALID_FIND_OPTION"

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(f"find option {option!r}: {problem}")


# -- updates and documents ---------------------------------------------------------


class UpdateError(ParqueDBError, ValueError):
    """An update document is malformed or cannot apply; ``.operator`` and ``.path`` say where."""

    code = "INVALID_UPDATE"

    def __init__(self, operator: str, path: str, problem: str) -> None:
        self.operator = operator
        self.path = path
        self.problem = problem
        where = f"{operator} at {path!r}" if path else operator
        super().__init__(f"update {where}: {problem}")


class ValidationError(ParqueDBError, ValueError):
    """A document violates its collection's schema or a name is invalid; nothing was written."""

    code = "VALIDATION"

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class SchemaError(ValidationError):
    """A collection schema declaration (``'string!'``, ``'decimal(10,2)'``...) is malformed."""

    code = "INVALID_SCHEMA"


# -- entities and commits ----------------------------------------------------------


class EntityNotFoundError(ParqueDBError, KeyError):
    """An entity id does not exist in the collection (or not at the requested time)."""

    code = "NOT_FOUND"

    def __init__(self, ns: str, entity_id: str) -> None:
        self.ns = ns
        self.entity_id = entity_id
        super().__init__(f"{ns}: no entity {entity_id!r}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class CommitError(ParqueDBError):
    """Publishing a commit (the head of a collection or a view) failed."""

    code = "COMMIT_FAILED"


class CommitConflictError(CommitError):
    """The head moved while we committed; nothing was published, reload and retry is safe."""

    code = "COMMIT_CONFLICT"

    def __init__(self, where: str, expected: object, found: object, hint: str = "reload and retry") -> None:
        self.where = where
        self.expected = expected
        self.found = found
        super().__init__(f"{where}: head moved during commit (expected {expected!r}, found {found!r}); {hint}")


class VersionConflictError(CommitError):
    """An entity's version is not the one the caller expected (optimistic concurrency)."""

    code = "VERSION_CONFLICT"

    def __init__(self, ns: str, entity_id: str, expected: object, found: object) -> None:
        self.ns = ns
        self.entity_id = entity_id
        self.expected = expected
        self.found = found
        super().__init__(
            f"{ns}/{entity_id}: version conflict (expected version {expected!r}, found {found!r}); "
            "re-read the entity and retry"
        )


class CommitStateUnknownError(CommitError):
    """The outcome of a commit is unknown (the response was lost); staged files are kept."""

    code = "COMMIT_STATE_UNKNOWN"


# -- views -------------------------------------------------------------------------


class ViewDefinitionError(ParqueDBError, ValueError):
    """A materialized-view definition is invalid; ``.view`` and ``.path`` say where."""

    code = "INVALID_VIEW"

    def __init__(self, view: str, path: str, problem: str, code: str | None = None) -> None:
        self.view = view
        self.path = path
        self.problem = problem
        if code:
            self.code = code
        where = f"{view}.{path}" if path else view
        super().__init__(f"{where}: {problem}")


class ViewCycleError(ViewDefinitionError):
    """Views depend on each other in a cycle; ``.cycle`` lists it, first name repeated last."""

    code = "CIRCULAR_DEPENDENCY"

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(cycle[0], "$from", "circular dependency " + " → ".join(self.cycle))


class ViewNotFoundError(ParqueDBError, KeyError):
    """A view or collection name is not defined; the message lists close matches."""

    code = "NOT_FOUND"

    def __init__(self, name: str, known: Iterable[str], kind: str = "view") -> None:
        self.name = name
        known = sorted(known)
        listing = ", ".join(known) if known else "none"
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, known)} (known: {listing})")

    def __str__(self) -> str:
        return self.args[0]


# -- SQL ---------------------------------------------------------------------------


class SQLError(ParqueDBError, ValueError):
    """A ParqueDB SQL statement cannot be parsed, translated or is unsafe."""

    code = "INVALID_SQL"


class SQLSyntaxError(SQLError):
    """SQL text does not parse; ``.line`` and ``.column`` (1-based) point at the offending token."""

    code = "SQL_SYNTAX"

    def __init__(self, problem: str, line: int, column: int, near: str = "") -> None:
        self.problem = problem
        self.line = line
        self.column = column
        self.near = near
        where = f"sql line {line}, column {column}"
        super().__init__(f"{where}: {problem}" + (f" near {near!r}" if near else ""))


class UnsafeSQLError(SQLError):
    """A WHERE clause matches one of ParqueDB's injection checks (the message is upstream's text)."""

    code = "SQL_INJECTION"

    def __init__(self, message: str) -> None:
        self.reason = message
        super().__init__(message)


class UnknownTableError(SQLError):
    """A query names a table that is neither a collection nor a view; the message lists the known ones."""

    code = "UNKNOWN_TABLE"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) if self.known else "none"
        super().__init__(f"sql: unknown table {name!r}{did_you_mean(name, self.known)} (tables: {listing})")


class QueryError(ParqueDBError):
    """DuckDB rejected a query we built or the user wrote (the DuckDB message is kept)."""

    code = "QUERY_FAILED"


# -- storage -----------------------------------------------------------------------


class StorageError(ParqueDBError, OSError):
    """The object store failed; the vendor error is the ``__cause__``."""

    code = "STORAGE"

    def __init__(self, where: str, problem: str, hint: str = "") -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" + (f"; {hint}" if hint else ""))


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The key does not exist in the store."""

    code = "NOT_FOUND"


class BucketNotFoundError(StorageError):
    """The bucket does not exist (or the endpoint does not serve it)."""

    code = "NO_SUCH_BUCKET"


class PermissionDeniedError(StorageError, PermissionError):
    """The credentials are missing, wrong or lack permission for this operation."""

    code = "ACCESS_DENIED"


class PreconditionFailedError(StorageError):
    """A conditional write lost: the key exists (create) or its ETag changed (swap)."""

    code = "PRECONDITION_FAILED"


# -- upstream files ----------------------------------------------------------------


class UpstreamFormatError(ParqueDBError, ValueError):
    """A file written by the TypeScript ParqueDB is malformed or not in a layout we read; ``.key`` names it."""

    code = "UPSTREAM_FORMAT"

    def __init__(self, key: str, problem: str, hint: str = "") -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" + (f"; {hint}" if hint else ""))
