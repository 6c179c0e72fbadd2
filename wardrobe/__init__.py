"""The top floor: the `wardrobe` command line, and nothing else.

Every sub-command is a thin call into contract/, service/, training/ or report/;
this package may import all of them and none of them imports it
(docs/architecture.md).
"""
