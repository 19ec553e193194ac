"""Pure compilers: filter documents, view definitions and WHERE clauses to sqlglot ASTs (no I/O)."""
